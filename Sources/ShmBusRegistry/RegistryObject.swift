import DBus
import SharedSegments
import ShmBusProtocol

/// `/org/shmbus/Registry1`: the registry's methods and properties, as the generated
/// ``Registry1/Implementation`` asks for them. Arguments arrive decoded and typed;
/// this object checks what the types cannot (names, option combinations, the
/// descriptor) and hands the rest to the ``SegmentRegistry`` actor.
struct RegistryObject: Registry1.Implementation {
    let registry: SegmentRegistry
    let configuration: RegistryConfiguration
    let connection: DBusConnection

    /// A typed dictionary with an unknown key or an ill-typed value is the registry's
    /// `InvalidArgument`, like every other malformed argument.
    func invalidArguments(_ error: DBusError) -> any Error {
        ShmBusError.invalidArgument(error.message)
    }

    func registerSegment(channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions, call: DBusMethodCall)
        async throws -> (segment: String, path: ObjectPath)
    {
        var request = try Self.registration(channel: channel, fd: fd, options: options, sender: call.sender)
        request.senderUID = await unixUser(of: call.sender)
        await settleDeparture(ofOwnerOf: channel, before: call.sender)
        return try await registry.register(request)
    }

    func unregisterSegment(segment: String, call: DBusMethodCall) async throws {
        let uid = await unixUser(of: call.sender)
        try await registry.unregister(segment, sender: call.sender, senderUID: uid)
    }

    func openSegment(segment name: String, call: DBusMethodCall) async throws -> (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary) {
        guard let segment = await registry.segment(name) else {
            throw ShmBusError.notFound("no segment '\(name)' in the registry")
        }
        let info = Registry1.SegmentInfoDictionary(
            channel: segment.channel, generation: segment.file.generation, capacity: segment.file.capacity,
            owner: segment.owner ?? "", persistent: segment.persistent, state: segment.state.rawValue,
            replacedBy: segment.replacedBy, doorbell: segment.doorbell)
        return (segment.file.readOnlyDescriptor, info)
    }

    func listChannels(call: DBusMethodCall) async throws -> [ChannelInfo] {
        await registry.channelInfos()
    }

    func listSegments(channel: String, call: DBusMethodCall) async throws -> [SegmentInfo] {
        try await registry.segmentInfos(channel: channel)
    }

    func lookup(channel: String, key: String, call: DBusMethodCall) async throws
        -> (segment: String, offset: UInt64, length: UInt64, sequence: UInt64)
    {
        let (segment, location) = try await registry.lookup(channel: channel, key: key)
        return (segment, location.offset, location.length, location.sequence)
    }

    var version: String { ShmBusProtocol.version }
    var channelCount: UInt32 { get async { UInt32(clamping: await registry.channels.count) } }
    var segmentCount: UInt32 { get async { UInt32(clamping: await registry.segments.count) } }
    var totalBytes: UInt64 { get async { await registry.totalBytes } }
    var maxSegmentsPerConnection: UInt32 { UInt32(clamping: configuration.maxSegmentsPerConnection) }
    var maxBytesPerConnection: UInt64 { configuration.maxBytesPerConnection }

    /// Checks the arguments of `RegisterSegment` and inspects the descriptor.
    static func registration(
        channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions, sender: String
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
        var request = SegmentRegistry.Registration(channel: channel, file: file, sender: sender)
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

    /// The Unix user of a connection, nil when the bus cannot say.
    private func unixUser(of sender: String) async -> UInt32? {
        guard !sender.isEmpty else { return nil }
        return try? await connection.unixUser(of: sender)
    }
}
