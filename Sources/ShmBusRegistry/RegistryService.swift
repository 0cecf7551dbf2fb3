import DBus
import Foundation
import Logging
import ShmBusProtocol
import Locking
import ShmBusPolicy
import ShmBusSystem

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
    /// Calls and errors counted as they happen; the rest read at each ``metricsText()``.
    let metrics: RegistryMetrics
    private let root: DBusExport
    private let keeper: KeeperLink?
    private let background: Lock<[Task<Void, Never>]>
    private let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    let logger: Logger

    private init(
        connection: DBusConnection, registry: SegmentRegistry, metrics: RegistryMetrics, root: DBusExport, keeper: KeeperLink?,
        logger: Logger
    ) {
        self.connection = connection
        self.registry = registry
        self.metrics = metrics
        self.root = root
        self.keeper = keeper
        self.logger = logger
        background = Lock([])
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    /// Exports the registry on `connection`, takes back the persistent segments a
    /// previous registry left with the keeper (``KeeperService``), and takes the
    /// well-known name.
    ///
    /// - Throws: ``ShmBusError`` when another registry already owns the name.
    public static func start(
        on connection: DBusConnection, configuration: RegistryConfiguration = RegistryConfiguration(),
        logger: Logger = Logger(label: "org.shmbus.registry")
    ) async throws -> RegistryService {
        // Descriptors are what a segment costs the process, so RLIMIT_NOFILE bounds the
        // segments (see DescriptorBudget). A limit that cannot be read bounds nothing.
        if let soft = try? FileDescriptorLimit.current().soft, soft < Int.max / 2 {
            let reserve = RegistryConfiguration.descriptorReserve(for: connection.callScheduling)
            let allowed = DescriptorBudget.shared.configure(softLimit: soft, reserve: reserve)
            logger.info(
                "descriptor budget", metadata: ["RLIMIT_NOFILE": "\(soft)", "reserved": "\(reserve)", "for-segments": "\(allowed)"])
            if allowed / 2 < configuration.maxSegments {
                logger.notice(
                    "RLIMIT_NOFILE allows fewer segments than --max-segments",
                    metadata: ["segments-with-doorbells": "\(allowed / 2)", "without": "\(allowed)", "max-segments": "\(configuration.maxSegments)"])
            }
        }
        let registry = SegmentRegistry(configuration: configuration, logger: logger)
        let peers = PeerDirectory(connection: connection)
        let object = RegistryObject(registry: registry, configuration: configuration, connection: connection, peers: peers)
        let metrics = RegistryMetrics()
        let served = ServedCalls(metrics: metrics, threshold: configuration.slowCallThreshold, logger: logger)
        connection.observeServedCalls { served.record($0) }
        let root = try await connection.export(
            [metrics.counting(Registry1.interface(implementedBy: object))], at: ShmBusProtocol.registryPath, objectManager: true)
        let keeper = configuration.keepsPersistentSegments
            ? KeeperLink(connection: connection, command: configuration.keeperCommand, logger: logger) { await registry.keptSegments() }
            : nil
        await registry.attach(connection: connection, root: root, keeper: keeper)
        let service = RegistryService(
            connection: connection, registry: registry, metrics: metrics, root: root, keeper: keeper, logger: logger)

        // Follow departures before taking anything back or taking the name, so none is
        // missed.
        let owners = try await connection.nameOwnerChanges()
        service.spawn {
            do {
                for try await change in owners {
                    if change.name == ShmBusProtocol.keeperName {
                        keeper?.keeperChanged()
                    } else if change.name.hasPrefix(":"), change.newOwner == nil {
                        await registry.ownerLeft(change.name)
                        await peers.forget(change.name)
                    }
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
        // Statistics are sampled once a second while someone watches, and not at all
        // otherwise (the loop waits for a watcher, not on a timer).
        service.spawn {
            while !Task.isCancelled {
                await registry.untilWatched()
                try? await Task.sleep(for: SegmentRegistry.sampleInterval)
                await registry.tickStatistics()
            }
        }
        if let interval = configuration.memoryTrimInterval {
            service.spawn {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    Self.trimMemory(over: configuration.memoryTrimThreshold, logger: logger)
                }
            }
        }
        if keeper != nil {
            let kept = await KeeperLink.takeBack(on: connection, logger: logger)
            if !kept.isEmpty {
                let (adopted, dropped) = await registry.adopt(kept) { owner in
                    ((try? await connection.nameOwner(of: owner)) ?? nil) != nil
                }
                logger.info("took back persistent segments from the keeper", metadata: ["adopted": "\(adopted)", "dropped": "\(dropped)"])
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

    /// Gives the malloc arenas' free memory back to the kernel when there is more of it
    /// than `threshold` bytes. What thousands of channels or a flood of calls took is
    /// freed into the arenas, where it stays resident (in the issue 13 measurements,
    /// 16–23 MiB free in the arenas against 1.4 MiB in use, after 2,000 channels came
    /// and went); `malloc_trim` hands it back. Off the registry actor: it walks the
    /// arenas.
    static func trimMemory(over threshold: Int, logger: Logger) {
        let usage = MallocArenas.usage
        guard usage.free > threshold else { return }
        MallocArenas.trim()
        logger.debug("gave free memory back", metadata: ["free-bytes": "\(usage.free)", "in-use-bytes": "\(usage.inUse)"])
    }

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        background.withLock { $0.append(task) }
    }

    /// The registry's metrics as Prometheus text (docs/OBSERVABILITY.md, "Metrics"), for
    /// `shmbus daemon --metrics`. Reading them samples each channel's rates as a read of
    /// its properties does.
    public func metricsText() async -> String {
        metrics.render(await registry.metricsSample())
    }

    /// Waits until ``stop()`` is called or the bus connection ends.
    public func run() async {
        for await _ in finished {}
    }

    /// Stops serving: releases the name, withdraws the objects, closes the connection.
    public func stop() {
        for task in background.withLock({ $0 }) { task.cancel() }
        keeper?.stop()
        root.cancel()
        connection.close()
        finish.finish()
    }
}
