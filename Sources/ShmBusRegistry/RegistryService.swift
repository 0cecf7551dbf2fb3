import DBus
import Foundation
import Logging
import SharedSegments
import ShmBus
import Locking

/// The ShmBus registry on a bus: owns `org.shmbus.Registry1`, exports
/// `/org/shmbus/Registry1` (with an ObjectManager over every channel and segment
/// object), answers the registry's methods, and removes segments when their owners
/// leave the bus or their ttl passes.
///
/// ```swift
/// let bus = try await DBusConnection.connect(to: .session)
/// let service = try await RegistryService.start(on: bus)
/// try await service.run()   // until stop() or the bus goes away
/// ```
public final class RegistryService: Sendable {
    public let connection: DBusConnection
    let registry: SegmentRegistry
    private let root: DBusExport
    private let background: Lock<[Task<Void, Never>]>
    private let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    let logger: Logger

    private init(connection: DBusConnection, registry: SegmentRegistry, root: DBusExport, logger: Logger) {
        self.connection = connection
        self.registry = registry
        self.root = root
        self.logger = logger
        background = Lock([])
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    /// Exports the registry on `connection` and takes the well-known name.
    ///
    /// - Throws: ``ShmBusError`` when another registry already owns the name.
    public static func start(
        on connection: DBusConnection, configuration: RegistryConfiguration = RegistryConfiguration(),
        logger: Logger = Logger(label: "org.shmbus.registry")
    ) async throws -> RegistryService {
        let registry = SegmentRegistry(configuration: configuration, logger: logger)
        let interface = try Self.registryInterface(registry, configuration: configuration, connection: connection)
        let root = try await connection.export([interface], at: ShmBusProtocol.registryPath, objectManager: true)
        await registry.attach(connection: connection, root: root)
        let service = RegistryService(connection: connection, registry: registry, root: root, logger: logger)

        // Follow departures before taking the name, so none is missed.
        let owners = try await connection.nameOwnerChanges()
        service.spawn {
            do {
                for try await change in owners where change.name.hasPrefix(":") && change.newOwner == nil {
                    await registry.ownerLeft(change.name)
                }
            } catch {
                logger.info("stopped following the bus", metadata: ["reason": "\(error)"])
            }
            service.finish.finish()
        }
        service.spawn {
            while !Task.isCancelled {
                try? await Task.sleep(for: configuration.sweepInterval)
                await registry.sweep()
            }
        }
        let reply = try await connection.requestName(ShmBusProtocol.registryName, flags: [.doNotQueue])
        guard reply == .primaryOwner || reply == .alreadyOwner else {
            let owner = (try? await connection.nameOwner(of: ShmBusProtocol.registryName)) ?? nil
            service.stop()
            throw ShmBusError(
                .channelBusy, "another registry already owns \(ShmBusProtocol.registryName)\(owner.map { " (\($0))" } ?? "")")
        }
        logger.info("registry started", metadata: ["unique-name": "\(connection.uniqueName)", "bus": "\(connection.bus)"])
        return service
    }

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        background.withLock { $0.append(task) }
    }

    /// Waits until ``stop()`` is called or the bus connection ends.
    public func run() async {
        for await _ in finished {}
    }

    /// Stops serving: releases the name, withdraws the objects, closes the connection.
    public func stop() {
        for task in background.withLock({ $0 }) { task.cancel() }
        root.cancel()
        connection.close()
        finish.finish()
    }

    // MARK: Methods

    /// Runs `body`, turning ``ShmBusError`` into the `org.shmbus.Error.*` reply.
    private static func handler(_ body: @escaping @Sendable (DBusMethodCall) async throws -> [DBusValue]) -> DBusMethod.Handler {
        { call in
            do {
                return try await body(call)
            } catch let error as ShmBusError {
                throw error.dbusError
            }
        }
    }

    private static func registryInterface(
        _ registry: SegmentRegistry, configuration: RegistryConfiguration, connection: DBusConnection
    ) throws -> DBusInterface {
        try ShmBusProtocol.registryInterface()
            .implementing([
                "RegisterSegment": handler { call in
                    let (channel, fd, options) = try call.arguments.decode(String.self, UnixFileDescriptor.self, [String: DBusVariant].self)
                    var request = try await Self.registration(channel: channel, fd: fd, options: options, sender: call.sender)
                    request.senderUID = await Self.unixUser(of: call.sender, on: connection)
                    let (segment, path) = try await registry.register(request)
                    return [.string(segment), .objectPath(path)]
                },
                "UnregisterSegment": handler { call in
                    let segment = try call.arguments.decode(String.self)
                    let uid = await Self.unixUser(of: call.sender, on: connection)
                    try await registry.unregister(segment, sender: call.sender, senderUID: uid)
                    return []
                },
                "OpenSegment": handler { call in
                    let name = try call.arguments.decode(String.self)
                    guard let segment = await registry.segment(name) else {
                        throw ShmBusError.notFound("no segment '\(name)' in the registry")
                    }
                    let fd = try segment.file.readOnlyDescriptor()
                    var info: [DBusDictEntry] = [
                        .init(key: .string("channel"), value: .variant(.string(segment.channel))),
                        .init(key: .string("generation"), value: .variant(.uint64(segment.file.generation))),
                        .init(key: .string("capacity"), value: .variant(.uint64(segment.file.capacity))),
                        .init(key: .string("owner"), value: .variant(.string(segment.owner ?? ""))),
                        .init(key: .string("persistent"), value: .variant(.boolean(segment.persistent))),
                        .init(key: .string("state"), value: .variant(.string(segment.state.rawValue))),
                        .init(key: .string("replaced_by"), value: .variant(.string(segment.replacedBy))),
                    ]
                    if let doorbell = segment.doorbell {
                        info.append(.init(key: .string("doorbell"), value: .variant(.unixFD(doorbell))))
                    }
                    return [.unixFD(fd), .dictionary(key: .string, value: .variant, info)]
                },
                "ListChannels": handler { _ in
                    [.array(ChannelInfo.dbusType, await registry.channelInfos().map(\.dbusValue))]
                },
                "ListSegments": handler { call in
                    let channel = try call.arguments.decode(String.self)
                    return [.array(SegmentInfo.dbusType, try await registry.segmentInfos(channel: channel).map(\.dbusValue))]
                },
                "Lookup": handler { call in
                    let (channel, key) = try call.arguments.decode(String.self, String.self)
                    let (segment, location) = try await registry.lookup(channel: channel, key: key)
                    return [.string(segment), .uint64(location.offset), .uint64(location.length), .uint64(location.sequence)]
                },
            ])
            .implementingProperty("Version", get: { .string(ShmBusProtocol.version) })
            .implementingProperty("ChannelCount", get: { .uint32(UInt32(clamping: await registry.channels.count)) })
            .implementingProperty("SegmentCount", get: { .uint32(UInt32(clamping: await registry.segments.count)) })
            .implementingProperty("TotalBytes", get: { .uint64(await registry.totalBytes) })
            .implementingProperty(
                "MaxSegmentsPerConnection", get: { .uint32(UInt32(clamping: configuration.maxSegmentsPerConnection)) })
            .implementingProperty("MaxBytesPerConnection", get: { .uint64(configuration.maxBytesPerConnection) })
    }

    /// Checks the arguments of `RegisterSegment` and inspects the descriptor.
    private static func registration(
        channel: String, fd: UnixFileDescriptor, options: [String: DBusVariant], sender: String
    ) async throws -> SegmentRegistry.Registration {
        if let problem = ChannelName.problem(with: channel) {
            throw ShmBusError.invalidArgument("invalid channel name '\(channel.prefix(220))': \(problem)")
        }
        let known: Set<String> = ["persistent", "ttl", "replaces", "doorbell"]
        if let unknown = options.keys.sorted().first(where: { !known.contains($0) }) {
            throw ShmBusError.invalidArgument("unknown option '\(unknown)'; known options: persistent, ttl, replaces, doorbell")
        }
        let persistent: Bool?
        let ttl: UInt64?
        let replaces: String?
        let doorbell: UnixFileDescriptor?
        do {
            persistent = try options.decode("persistent", as: Bool.self)
            ttl = try options.decode("ttl", as: UInt64.self)
            replaces = try options.decode("replaces", as: String.self)
            doorbell = try options.decode("doorbell", as: UnixFileDescriptor.self)
        } catch {
            throw ShmBusError.invalidArgument(error.message)
        }
        if ttl != nil, persistent != true {
            throw ShmBusError.invalidArgument("option 'ttl' applies to persistent segments; pass persistent=true too")
        }
        if let ttl, ttl > 10 * 365 * 86_400 {
            throw ShmBusError.invalidArgument("ttl \(ttl) s is more than ten years")
        }
        if let doorbell { try InspectedSegment.checkDoorbell(doorbell) }
        let file = try InspectedSegment(fd, expectedChannel: channel)
        var request = SegmentRegistry.Registration(channel: channel, file: file, sender: sender)
        request.persistent = persistent ?? false
        request.ttl = ttl.map { .seconds(Int64($0)) }
        request.replaces = replaces ?? ""
        request.doorbell = doorbell
        return request
    }

    /// The Unix user of a connection (`GetConnectionUnixUser`), nil when the bus cannot say.
    private static func unixUser(of sender: String, on connection: DBusConnection) async -> UInt32? {
        guard !sender.isEmpty else { return nil }
        return try? await connection.call(
            destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
            method: "GetConnectionUnixUser", [.string(sender)]
        ).decode(UInt32.self)
    }
}
