import DBus
import Foundation
import ShmBus
import ShmBusSystem

/// One channel as `shmbus top` shows it: the registry's statistics (docs/PROTOCOL.md,
/// "Statistics") and rates over top's own refresh interval. Its fields, as they are,
/// are the objects of `--json`'s `channels` (docs/OBSERVABILITY.md).
struct TopChannel: Encodable, Sendable, Equatable {
    var name: String
    /// Chunks and record bytes per second over ``TopSnapshot/interval``; nil until two
    /// polls have seen the channel (and after its counts went back: a new channel of
    /// the same name).
    var chunkRate: Double?
    var byteRate: Double?
    var publishedChunks: UInt64
    var publishedBytes: UInt64
    var liveBytes: UInt64
    var committedBytes: UInt64
    /// The capacity of its segments, headers included.
    var capacity: UInt64
    var segments: Int
    var generation: UInt64
    var collections: UInt64
    var readers: UInt32
    /// The owner's unique bus name; empty once it has left.
    var owner: String
    var publisherUser: UInt32?
    var publisherUserName: String?
    var publisherProcess: UInt32?
    /// The publisher's command name (`/proc/PID/comm`) where this process can read it.
    var publisherCommand: String?
    var timeToLive: UInt64
}

/// Every channel in the registry at one poll.
struct TopSnapshot: Sendable {
    /// Seconds since the Unix epoch.
    var time: Double
    /// Seconds between the previous poll and this one: what the rates cover.
    var interval: Double?
    var channels: [TopChannel]
    var segmentCount: Int
    /// Objects of the registry's tree whose properties did not decode (a registry of
    /// another version, or not a registry): left out, and counted.
    var unreadableObjects: Int
}

/// Polls the registry's whole object tree (`GetManagedObjects`, one call) and turns
/// each channel's counts into rates over the time between two polls.
///
/// Why polling, and not `WatchStatistics` with `PropertiesChanged`: top redraws a whole
/// table every second anyway, and one call gives it a consistent one, the properties
/// that never signal included (each segment's `Capacity`, `CommittedBytes`); there is
/// nothing to reconcile after a missed signal, an `InterfacesAdded` or a registry
/// restart (the next poll is simply right); a watch would make the registry sample every
/// channel and broadcast `PropertiesChanged` to every match on the bus for as long as
/// top runs; and rates from top's own polls cover exactly its own interval, whoever else
/// reads the statistics in between (the registry's `ChunkRate` covers the time since
/// the previous read by anyone).
actor TopSampler {
    private let connection: DBusConnection
    private var previous: (at: ContinuousClock.Instant, counts: [String: (chunks: UInt64, bytes: UInt64)])?

    init(connection: DBusConnection) {
        self.connection = connection
    }

    func sample() async throws(ShmBusError) -> TopSnapshot {
        let reply: [DBusValue]
        do {
            reply = try await connection.call(
                destination: ShmBusProtocol.registryName, path: ShmBusProtocol.registryPath,
                interface: "org.freedesktop.DBus.ObjectManager", method: "GetManagedObjects", timeout: .seconds(10))
        } catch {
            throw ShmBusError.wrapping(error) ?? ShmBusError(.bus, "\(error)")
        }
        let now = ContinuousClock.now
        let objects: [ObjectPath: [String: [String: DBusVariant]]]
        do {
            objects = try reply.decode([ObjectPath: [String: [String: DBusVariant]]].self)
        } catch {
            throw ShmBusError(.bus, "the registry's GetManagedObjects reply is not a{oa{sa{sv}}}: \(error.message)", cause: .bus(error))
        }
        var unreadable = 0
        var capacities: [ObjectPath: UInt64] = [:]
        var channels: [Channel1.Properties] = []
        for (path, interfaces) in objects {
            do throws(DBusError) {
                if let values = interfaces[Segment1.name] {
                    capacities[path] = try Segment1.Properties(values.mapValues(\.value)).capacity
                }
                if let values = interfaces[Channel1.name] {
                    channels.append(try Channel1.Properties(values.mapValues(\.value)))
                }
            } catch {
                unreadable += 1
            }
        }
        let interval = previous.map { (now - $0.at).inSeconds }
        var counts: [String: (chunks: UInt64, bytes: UInt64)] = [:]
        var rows: [TopChannel] = []
        for channel in channels {
            counts[channel.name] = (channel.publishedChunks, channel.publishedBytes)
            var row = TopChannel(channel, capacity: channel.segments.reduce(0) { $0 &+ (capacities[$1] ?? 0) })
            if let interval, interval > 0, let before = previous?.counts[channel.name],
                channel.publishedChunks >= before.chunks, channel.publishedBytes >= before.bytes
            {
                row.chunkRate = Double(channel.publishedChunks - before.chunks) / interval
                row.byteRate = Double(channel.publishedBytes - before.bytes) / interval
            }
            rows.append(row)
        }
        previous = (now, counts)
        return TopSnapshot(
            time: Date().timeIntervalSince1970, interval: interval, channels: rows, segmentCount: capacities.count,
            unreadableObjects: unreadable)
    }
}

extension TopChannel {
    /// A channel's row from its object's properties; the rates are the sampler's.
    init(_ channel: Channel1.Properties, capacity: UInt64) {
        let user = channel.publisherUser == .max ? nil : channel.publisherUser
        let process = channel.publisherProcess == .max ? nil : channel.publisherProcess
        self.init(
            name: channel.name, publishedChunks: channel.publishedChunks, publishedBytes: channel.publishedBytes,
            liveBytes: channel.liveBytes, committedBytes: channel.committedBytes, capacity: capacity,
            segments: channel.segments.count, generation: channel.generation, collections: channel.collections,
            readers: channel.readerCount, owner: channel.owner, publisherUser: user,
            publisherUserName: user.flatMap(Self.userName), publisherProcess: process,
            publisherCommand: process.flatMap(Self.command), timeToLive: channel.timeToLive)
    }

    /// The account name of `uid` (getpwuid_r), nil when it has none.
    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }

    /// `/proc/PID/comm`: the process ID is the registry's word and only for display, so a
    /// process of that number here (another one, in another PID namespace) is shown for
    /// what it is, a name, never used for anything.
    static func command(_ pid: UInt32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/comm"), data.count <= 64 else { return nil }
        let name = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }
}
