import DBus
import SharedSegments
import ShmBusPolicy
import ShmBusProtocol

/// `/org/shmbus/Registry1`: the registry's methods and properties, as the generated
/// ``Registry1/Implementation`` asks for them. Arguments arrive decoded and typed;
/// this object checks what the types cannot (names, option combinations, the
/// descriptor) and hands the rest to the ``SegmentRegistry`` actor.
struct RegistryObject: Registry1.Implementation {
    let registry: SegmentRegistry
    let configuration: RegistryConfiguration
    let connection: DBusConnection
    /// Who the callers are (from the bus, and their processes for sandboxes).
    let peers: PeerDirectory

    /// A typed dictionary with an unknown key or an ill-typed value is the registry's
    /// `InvalidArgument`, like every other malformed argument.
    func invalidArguments(_ error: DBusError) -> any Error {
        ShmBusError.invalidArgument(error.message)
    }

    func registerSegment(channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions, call: DBusMethodCall)
        async throws -> (segment: String, path: ObjectPath)
    {
        let identity = try await peers.identity(of: call.sender)
        let request = try Self.registration(channel: channel, fd: fd, options: options, sender: call.sender, identity: identity)
        await settleDeparture(ofOwnerOf: channel, before: call.sender)
        return try await registry.register(request)
    }

    func unregisterSegment(segment: String, call: DBusMethodCall) async throws {
        try await registry.unregister(segment, sender: call.sender, identity: try await peers.identity(of: call.sender))
    }

    func openSegment(segment name: String, call: DBusMethodCall) async throws -> (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary) {
        guard let segment = await registry.segment(name) else {
            throw ShmBusError.notFound("no segment '\(name)' in the registry")
        }
        // The descriptor, and the doorbell with it, go only to those who may read.
        try AccessRules.checkRead(
            try await peers.identity(of: call.sender), channel: segment.channel, owner: segment.holder, policy: segment.readers)
        let info = Registry1.SegmentInfoDictionary(
            channel: segment.channel, generation: segment.file.generation, capacity: segment.file.capacity,
            owner: segment.owner ?? "", persistent: segment.persistent, state: segment.state.rawValue,
            replacedBy: segment.replacedBy, doorbell: segment.doorbell, readers: segment.readers.wire)
        return (segment.file.readOnlyDescriptor, info)
    }

    func listChannels(call: DBusMethodCall) async throws -> [ChannelInfo] {
        await registry.channelInfos(visibleTo: try await peers.identity(of: call.sender))
    }

    func listSegments(channel: String, call: DBusMethodCall) async throws -> [SegmentInfo] {
        try await registry.segmentInfos(channel: channel, visibleTo: try await peers.identity(of: call.sender))
    }

    func lookup(channel: String, key: String, call: DBusMethodCall) async throws
        -> (segment: String, offset: UInt64, length: UInt64, sequence: UInt64)
    {
        let (segment, location) = try await registry.lookup(channel: channel, key: key, reader: try await peers.identity(of: call.sender))
        return (segment, location.offset, location.length, location.sequence)
    }

    func lookupChunk(channel: String, key: String, call: DBusMethodCall) async throws
        -> (segment: String, offset: UInt64, length: UInt64, sequence: UInt64, info: Registry1.ChunkInfoDictionary)
    {
        let (segment, location) = try await registry.lookup(channel: channel, key: key, reader: try await peers.identity(of: call.sender))
        let info = Registry1.ChunkInfoDictionary(
            timestamp: location.timestamp, expiry: location.expiry,
            attributes: location.attributes.isEmpty ? nil : location.attributes.dbusDictionary)
        return (segment, location.offset, location.length, location.sequence, info)
    }

    var version: String { ShmBusProtocol.version }
    var channelCount: UInt32 { get async { UInt32(clamping: await registry.channels.count) } }
    var segmentCount: UInt32 { get async { UInt32(clamping: await registry.segments.count) } }
    var totalBytes: UInt64 { get async { await registry.totalBytes } }
    var maxSegmentsPerConnection: UInt32 { UInt32(clamping: configuration.maxSegmentsPerConnection) }
    var maxBytesPerConnection: UInt64 { configuration.maxBytesPerConnection }

    /// Checks the arguments of `RegisterSegment` and inspects the descriptor.
    static func registration(
        channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions, sender: String, identity: PeerIdentity
    ) throws(ShmBusError) -> SegmentRegistry.Registration {
        if let problem = ChannelName.problem(with: channel) {
            throw .invalidArgument("invalid channel name '\(channel.prefix(220))': \(problem)")
        }
        if options.ttl != nil, options.persistent != true {
            throw .invalidArgument("option 'ttl' applies to persistent segments; pass persistent=true too")
        }
        if let ttl = options.ttl, ttl > 10 * 365 * 86_400 {
            throw .invalidArgument("ttl \(ttl) s is more than ten years")
        }
        if let doorbell = options.doorbell { try InspectedSegment.checkDoorbell(doorbell) }
        let file = try InspectedSegment(fd, expectedChannel: channel)
        var request = SegmentRegistry.Registration(channel: channel, file: file, sender: sender, identity: identity)
        request.readers = try ReadPolicy(wire: options.readers ?? [])
        request.persistent = options.persistent ?? false
        request.ttl = options.ttl.map { .seconds(Int64($0)) }
        request.replaces = options.replaces ?? ""
        request.doorbell = options.doorbell
        return request
    }

    /// A publisher that continues a channel often registers moments after the previous
    /// one closed, before the registry has handled that one's `NameOwnerChanged` (the
    /// signal and the call arrive on different paths). The bus is asked whether the
    /// channel's owner is still connected, and a departure it confirms is handled first,
    /// so the caller is judged against the channel as it is.
    private func settleDeparture(ofOwnerOf channel: String, before sender: String) async {
        guard let owner = await registry.channel(channel)?.owner, owner != sender else { return }
        do {
            if try await connection.nameOwner(of: owner) == nil { await registry.ownerLeft(owner) }
        } catch {
            // Unknown: the registry's own view stands.
        }
    }
}
