import DBus
import SharedSegments

extension Publisher {
    /// What a publisher continues when it opens a channel whose previous publisher has
    /// left the bus (its persistent segments are still in the registry).
    struct History: Sendable {
        /// The chunks, generation and last sequence to continue.
        var lineage: Lineage
        /// The channel's current segment, which the new one replaces.
        var current: String
        /// Whether the history's segments are persistent, and for how long after their
        /// owner left (the longest ttl among them; nil: no ttl).
        var persistent: Bool
        var ttl: Duration?

        /// The history of `channel`, nil when it has none to continue: no such channel,
        /// or one with a publisher (whose segments the registry refuses to anyone else).
        static func find(channel: String, registry: RegistryClient, excludingKeys: Set<String>) async throws(ShmBusError)
            -> History?
        {
            guard let object = try await registry.channel(channel), !object.currentSegment.isEmpty else { return nil }
            // An owner the registry still names may have left a moment ago (it handles
            // departures as the bus announces them): the bus has the last word. The
            // registry asks it again when this publisher registers.
            if !object.owner.isEmpty {
                guard try await Self.hasLeft(object.owner, connection: registry.connection) else { return nil }
            }
            let listed: [SegmentInfo]
            do {
                listed = try await registry.segments(of: channel)
            } catch where error.code == .notFound {
                return nil   // its last segment expired in between
            }
            var readers: [SegmentReader] = []
            var ttl: Duration?
            for info in listed {
                let fd: UnixFileDescriptor
                do {
                    fd = try await registry.openSegment(info.name).fd
                } catch where error.code == .notFound {
                    continue   // removed in between
                }
                // A segment that does not map cannot give anything to continue. Without a
                // lease: its writer has left (above), so nobody can reuse its memory.
                guard let reader = try? SegmentReader(fd: fd, options: .init(withoutLease: true)) else { continue }
                readers.append(reader)
                if let properties = try? await registry.segmentProperties(info.name), properties.expires > 0 {
                    let remaining = Double(properties.expires) / 1e6 - Double(RealtimeClock.now()) / 1e9
                    ttl = max(ttl ?? .zero, .seconds(max(1, remaining.rounded(.up))))
                }
            }
            return History(
                lineage: Lineage(segments: readers, excludingKeys: excludingKeys), current: object.currentSegment,
                persistent: listed.contains { $0.persistent }, ttl: ttl)
        }

        /// How long a publisher waits for the channel's owner to finish leaving: one that
        /// closed a moment ago may not be gone from the bus yet (its socket closes
        /// asynchronously), and starting a new history beside it would split the channel.
        static let departureGrace: Duration = .seconds(2)

        /// Whether `owner` has left the bus, or leaves within ``departureGrace``. An
        /// owner still there after that keeps the channel (the registry refuses the
        /// registration with `AccessDenied`).
        static func hasLeft(_ owner: String, connection: DBusConnection) async throws(ShmBusError) -> Bool {
            try await ShmBusError.rethrowing {
                // Listen first, then ask: a departure in between is not missed.
                let changes = try await connection.nameOwnerChanges(for: owner)
                if try await connection.nameOwner(of: owner) == nil { return true }
                return await withTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        do {
                            for try await change in changes where change.newOwner == nil { return true }
                        } catch {}
                        return false
                    }
                    group.addTask {
                        try? await Task.sleep(for: departureGrace)
                        return false
                    }
                    let first = await group.next() ?? false
                    group.cancelAll()
                    return first
                }
            }
        }
    }
}
