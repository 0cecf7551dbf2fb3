import DBus
import SystemPackage

/// A client of the ShmBus registry (`org.shmbus.Registry1`): list, look up and open
/// segments, and watch the registry change.
///
/// Calls go to the well-known name, so on a bus with the activation file installed the
/// first call starts the daemon. Every failure arrives as a ``ShmBusError`` whose
/// ``ShmBusError/cause`` keeps the bus's own error.
public struct RegistryClient: Sendable {
    public let connection: DBusConnection
    private let registry: Registry1.Proxy

    public init(connection: DBusConnection) {
        self.connection = connection
        registry = ShmBusProtocol.registry(on: connection)
    }

    /// Connects to `bus` and returns a client on that connection.
    public static func connect(to bus: DBusConnection.Bus = .session) async throws(ShmBusError) -> RegistryClient {
        try await ShmBusError.rethrowing { RegistryClient(connection: try await DBusConnection.connect(to: bus)) }
    }

    /// Every channel (`ListChannels`).
    public func channels() async throws(ShmBusError) -> [ChannelInfo] {
        try await ShmBusError.rethrowing { try await registry.listChannels() }
    }

    /// One channel, from its own object (`org.shmbus.Channel1`), nil when the
    /// registry has no such channel. Cheaper than ``channels()`` for one name.
    public func channel(_ name: String) async throws(ShmBusError) -> Channel1.Properties? {
        do {
            return try await ShmBusProtocol.channel(name, on: connection).properties()
        } catch let error as DBusError where error.name == DBusError.unknownObjectName {
            return nil
        } catch {
            throw ShmBusError.wrapping(error) ?? ShmBusError(.bus, "\(error)")
        }
    }

    /// The segments of `channel`, or of all channels when nil (`ListSegments`).
    public func segments(of channel: String? = nil) async throws(ShmBusError) -> [SegmentInfo] {
        try await ShmBusError.rethrowing { try await registry.listSegments(channel: channel ?? "") }
    }

    /// The newest live chunk with `key` in `channel` (`Lookup`).
    public func lookup(channel: String, key: String) async throws(ShmBusError) -> LookupResult {
        let found = try await ShmBusError.rethrowing { try await registry.lookup(channel: channel, key: key) }
        return LookupResult(segment: found.segment, offset: found.offset, length: found.length, sequence: found.sequence)
    }

    /// The newest live chunk with `key` in `channel` and what it says it holds
    /// (`LookupChunk`), without mapping anything. The attributes come from the daemon,
    /// which read them from the segment; they are checked again here, as any value
    /// from the bus.
    public func lookupChunk(channel: String, key: String) async throws(ShmBusError) -> ChunkDescription {
        let found = try await ShmBusError.rethrowing { try await registry.lookupChunk(channel: channel, key: key) }
        let attributes = try ChunkAttributes(dbusDictionary: found.info.attributes ?? [:], payloadLength: found.length)
        return ChunkDescription(
            segment: found.segment, offset: found.offset, length: found.length, sequence: found.sequence,
            timestamp: found.info.timestamp ?? 0, expiry: found.info.expiry ?? 0, attributes: attributes)
    }

    /// A read-only descriptor of `segment` and what the registry knows of it
    /// (`OpenSegment`).
    public func openSegment(_ segment: String) async throws(ShmBusError) -> (
        fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary
    ) {
        try await ShmBusError.rethrowing { try await registry.openSegment(segment: segment) }
    }

    /// Registers a sealed segment (`RegisterSegment`); see docs/PROTOCOL.md for the
    /// options. The descriptor stays the caller's: libdbus sends a duplicate of its own.
    public func registerSegment(
        channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions = .init()
    ) async throws(ShmBusError) -> (segment: String, path: ObjectPath) {
        try await ShmBusError.rethrowing { try await registry.registerSegment(channel: channel, fd: fd, options: options) }
    }

    /// Removes a segment (`UnregisterSegment`).
    public func unregisterSegment(_ segment: String) async throws(ShmBusError) {
        try await ShmBusError.rethrowing { try await registry.unregisterSegment(segment: segment) }
    }

    /// The properties of a segment object (`org.shmbus.Segment1`).
    public func segmentProperties(_ segment: String) async throws(ShmBusError) -> Segment1.Properties {
        do {
            return try await ShmBusProtocol.segment(segment, on: connection).properties()
        } catch let error as DBusError where error.name == DBusError.unknownObjectName {
            throw ShmBusError(.notFound, "no segment '\(segment)' in the registry", cause: .bus(error))
        } catch {
            throw ShmBusError.wrapping(error) ?? ShmBusError(.bus, "\(error)")
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
    public func events() async throws(ShmBusError) -> AsyncThrowingStream<Event, any Error> {
        let (signals, owners) = try await ShmBusError.rethrowing {
            (
                try await connection.signals(
                    matching: MatchRule(sender: ShmBusProtocol.registryName, interface: Registry1.name, path: ShmBusProtocol.registryPath)),
                try await connection.nameOwnerChanges(for: ShmBusProtocol.registryName)
            )
        }
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

    /// The event a registry signal announces; nil for a signal this client does not
    /// know or that does not decode (the registry's signals are checked like any
    /// peer's).
    static func event(from message: DBusMessage) -> Event? {
        switch message.member {
        case Registry1.SegmentAdded.memberName:
            guard let s = try? Registry1.SegmentAdded(message: message) else { return nil }
            return .segmentAdded(segment: s.segment, channel: s.channel, path: s.path, generation: s.generation)
        case Registry1.SegmentRemoved.memberName:
            guard let s = try? Registry1.SegmentRemoved(message: message) else { return nil }
            return .segmentRemoved(segment: s.segment, channel: s.channel, reason: s.reason)
        case Registry1.SegmentReplaced.memberName:
            guard let s = try? Registry1.SegmentReplaced(message: message) else { return nil }
            return .segmentReplaced(old: s.oldSegment, new: s.newSegment, channel: s.channel, generation: s.generation)
        default:
            return nil
        }
    }
}
