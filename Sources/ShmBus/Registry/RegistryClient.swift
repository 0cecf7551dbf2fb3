import DBus
import SystemPackage

/// A client of the ShmBus registry (`org.shmbus.Registry1`): list, look up and open
/// segments, and watch the registry change.
///
/// Calls go to the well-known name, so on a bus with the activation file installed the
/// first call starts the daemon. Registry errors arrive as ``ShmBusError``.
public struct RegistryClient: Sendable {
    public let connection: DBusConnection
    private let interface: DBusInterface

    public init(connection: DBusConnection) throws {
        self.connection = connection
        interface = try ShmBusProtocol.registryInterface()
    }

    /// Connects to `bus` and returns a client on that connection.
    public static func connect(to bus: DBusConnection.Bus = .session) async throws -> RegistryClient {
        do {
            return try RegistryClient(connection: try await DBusConnection.connect(to: bus))
        } catch let error as DBusError {
            throw ShmBusError(.bus, error.message)
        }
    }

    private var proxy: DBusProxy {
        interface.proxy(on: connection, destination: ShmBusProtocol.registryName, path: ShmBusProtocol.registryPath)
    }

    /// Calls a registry method, mapping D-Bus errors to ``ShmBusError``.
    func call(_ method: String, _ arguments: [DBusValue], timeout: Duration? = DBusConnection.defaultTimeout) async throws
        -> [DBusValue]
    {
        do {
            return try await proxy.call(method, arguments, timeout: timeout)
        } catch {
            throw ShmBusError.wrapping(error)
        }
    }

    /// Every channel (`ListChannels`).
    public func channels() async throws -> [ChannelInfo] {
        try await call("ListChannels", []).decode([ChannelInfo].self)
    }

    /// The segments of `channel`, or of all channels when nil (`ListSegments`).
    public func segments(of channel: String? = nil) async throws -> [SegmentInfo] {
        try await call("ListSegments", [.string(channel ?? "")]).decode([SegmentInfo].self)
    }

    /// The newest live chunk with `key` in `channel` (`Lookup`).
    public func lookup(channel: String, key: String) async throws -> LookupResult {
        let (segment, offset, length, sequence) = try await call("Lookup", [.string(channel), .string(key)])
            .decode(String.self, UInt64.self, UInt64.self, UInt64.self)
        return LookupResult(segment: segment, offset: offset, length: length, sequence: sequence)
    }

    /// A read-only descriptor of `segment` and what the registry knows of it
    /// (`OpenSegment`).
    public func openSegment(_ segment: String) async throws -> (fd: UnixFileDescriptor, info: [String: DBusVariant]) {
        try await call("OpenSegment", [.string(segment)]).decode(UnixFileDescriptor.self, [String: DBusVariant].self)
    }

    /// Registers a sealed segment (`RegisterSegment`); see docs/PROTOCOL.md for options.
    public func registerSegment(channel: String, fd: UnixFileDescriptor, options: [String: DBusVariant]) async throws -> (
        segment: String, path: ObjectPath
    ) {
        let borrowed = try UnixFileDescriptor(duplicating: fd.rawValue)
        return try await call("RegisterSegment", [.string(channel), .unixFD(borrowed), options.dbusValue])
            .decode(String.self, ObjectPath.self)
    }

    /// Removes a segment (`UnregisterSegment`).
    public func unregisterSegment(_ segment: String) async throws {
        _ = try await call("UnregisterSegment", [.string(segment)])
    }

    /// The properties of a segment object (`org.shmbus.Segment1`).
    public func segmentProperties(_ segment: String) async throws -> [String: DBusValue] {
        do {
            let reply = try await connection.call(
                destination: ShmBusProtocol.registryName, path: ShmBusProtocol.segmentPath(segment),
                interface: StandardInterfaces.propertiesName, method: "GetAll", [.string(ShmBusProtocol.segmentInterfaceName)])
            return try reply.decode([String: DBusVariant].self).mapValues(\.value)
        } catch let error as DBusError where error.name == DBusError.unknownObjectName {
            throw ShmBusError(.notFound, "no segment '\(segment)' in the registry")
        } catch {
            throw ShmBusError.wrapping(error)
        }
    }

    /// A change in the registry.
    public enum Event: Sendable, Hashable {
        case segmentAdded(segment: String, channel: String, path: ObjectPath, generation: UInt64)
        case segmentRemoved(segment: String, channel: String, reason: String)
        case segmentReplaced(old: String, new: String, channel: String, generation: UInt64)
        /// The registry daemon appeared on the bus (started or restarted) with this unique name.
        case registryStarted(owner: String)
        /// The registry daemon left the bus.
        case registryStopped
    }

    /// Registry changes as they happen, including the daemon starting and stopping.
    public func events() async throws -> AsyncThrowingStream<Event, any Error> {
        let signals = try await connection.signals(
            matching: MatchRule(sender: ShmBusProtocol.registryName, interface: ShmBusProtocol.registryInterfaceName,
                path: ShmBusProtocol.registryPath))
        let owners = try await connection.nameOwnerChanges(for: ShmBusProtocol.registryName)
        return AsyncThrowingStream { continuation in
            let signalTask = Task {
                do {
                    for try await message in signals {
                        if let event = Self.event(from: message) { continuation.yield(event) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            let ownerTask = Task {
                do {
                    for try await change in owners {
                        continuation.yield(change.newOwner.map { .registryStarted(owner: $0) } ?? .registryStopped)
                    }
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                signalTask.cancel()
                ownerTask.cancel()
            }
        }
    }

    static func event(from message: DBusMessage) -> Event? {
        switch message.member {
        case "SegmentAdded":
            guard let (s, c, p, g) = try? message.body.decode(String.self, String.self, ObjectPath.self, UInt64.self) else { return nil }
            return .segmentAdded(segment: s, channel: c, path: p, generation: g)
        case "SegmentRemoved":
            guard let (s, c, r) = try? message.body.decode(String.self, String.self, String.self) else { return nil }
            return .segmentRemoved(segment: s, channel: c, reason: r)
        case "SegmentReplaced":
            guard let (o, n, c, g) = try? message.body.decode(String.self, String.self, String.self, UInt64.self) else { return nil }
            return .segmentReplaced(old: o, new: n, channel: c, generation: g)
        default:
            return nil
        }
    }
}
