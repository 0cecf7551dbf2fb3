import Logging
import NATS
import ShmBus
import Locking
import Synchronization

/// `shmbus bridge`: exports channels of this host into a JetStream stream and imports
/// channels from it (docs/BRIDGE.md). ``run(_:logger:)`` runs until its task is
/// cancelled.
public enum Bridge {
    public static func run(_ configuration: BridgeConfiguration, logger: Logger = Logger(label: "org.shmbus.bridge")) async throws {
        let layout = try configuration.validated()
        let threads = BridgeThreads()
        // Cancelling the task stops every thread within a second: their waits, fetches
        // and connection attempts are bounded.
        try await withTaskCancellationHandler {
            try await run(configuration, layout: layout, threads: threads, logger: logger)
        } onCancel: {
            threads.requestStop()
        }
        await threads.stop()
    }

    private static func run(
        _ configuration: BridgeConfiguration, layout: SubjectLayout, threads: BridgeThreads, logger: Logger
    ) async throws {
        // Connecting blocks: on a thread of the bridge's, like every NATS.c call, tried
        // again until a server answers (NATS.c reconnects by itself after that). A
        // server that refuses the bridge's credentials or TLS will refuse them again:
        // that ends the bridge instead (docs/BRIDGE.md, "Security").
        let connected: NATSConnection? = try await withCheckedThrowingContinuation { continuation in
            threads.start("shmbus-bridge-connect") {
                while !threads.isStopping {
                    do {
                        return continuation.resume(returning: try NATSConnection(options: configuration.nats))
                    } catch {
                        // Decided from NATS.c's status, not from the server's words.
                        if let refusal = error as? NATSError, refusal.isRefusal {
                            return continuation.resume(throwing: BridgeError.nats(refusal))
                        }
                        logger.warning("cannot connect to \(configuration.nats.servers) yet: \(error)")
                        threads.pause(.seconds(1))
                    }
                }
                continuation.resume(returning: nil)
            }
        }
        // nil: stopped before any server answered.
        guard let nats = connected else { return }
        defer { nats.close() }
        logger.info("connected to \(nats.connectedURL ?? "NATS"), max_payload \(nats.maxPayload)")
        if !configuration.exports.isEmpty {
            try await createStream(configuration, layout: layout, nats: nats, threads: threads, logger: logger)
        }
        let sending = Lock<Void>(())
        let exporting = Mutex<Set<String>>([])
        let startExport: @Sendable (String) -> Void = { channel in
            guard exporting.withLock({ $0.insert(channel).inserted }) else { return }
            let exporter = ChannelExporter(
                channel: channel, configuration: configuration, layout: layout, nats: nats, threads: threads, sending: sending,
                logger: logger)
            threads.start("shmbus-export \(channel)") { exporter.run() }
        }
        for name in configuration.exports where !name.hasSuffix("/") { startExport(name) }
        let prefixes = configuration.exports.filter { $0.hasSuffix("/") }
        if !prefixes.isEmpty {
            threads.start("shmbus-export-prefixes") {
                watchPrefixes(prefixes, bus: configuration.bus, threads: threads, logger: logger, start: startExport)
            }
        }
        for pattern in configuration.imports {
            threads.start("shmbus-import \(pattern)") {
                PatternImporter(pattern: pattern, configuration: configuration, layout: layout, nats: nats, threads: threads, logger: logger)
                    .run()
            }
        }
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        await threads.stop()
    }

    private static func createStream(
        _ configuration: BridgeConfiguration, layout: SubjectLayout, nats: NATSConnection, threads: BridgeThreads, logger: Logger
    ) async throws {
        var stream = StreamConfiguration(name: layout.stream, subjects: [layout.streamSubjects])
        stream.replicas = configuration.replicas
        stream.maxAge = configuration.maxAge
        stream.maxBytes = configuration.maxBytes
        stream.duplicateWindow = configuration.duplicateWindow
        let configured = stream
        // A cluster that has just started answers only once it has elected its
        // JetStream leader: the bridge waits for it, as for a server that is down.
        let info: StreamInfo = try await withCheckedThrowingContinuation { continuation in
            threads.start("shmbus-bridge-stream") {
                var delay: Duration = .milliseconds(100)
                while true {
                    do {
                        return continuation.resume(returning: try nats.addOrUpdateStream(configured))
                    } catch {
                        if threads.isStopping { return continuation.resume(throwing: error) }
                        logger.warning("stream '\(configured.name)' not ready: \(error); trying again")
                        threads.pause(delay)
                        delay = min(delay * 2, .seconds(2))
                    }
                }
            }
        }
        logger.info("stream '\(info.name)': \(info.messages) messages, \(info.bytes) bytes, \(info.replicas) replicas")
    }

    /// Starts an export for every channel under `prefixes`, now and whenever one appears
    /// (the registry is asked every two seconds).
    private static func watchPrefixes(
        _ prefixes: [String], bus: DBusConnection.Bus, threads: BridgeThreads, logger: Logger, start: @Sendable (String) -> Void
    ) {
        while !threads.isStopping {
            do {
                let channels = try awaitOnBridgeThread {
                    let connection = try await DBusConnection.connect(to: bus)
                    defer { connection.close() }
                    return try await RegistryClient(connection: connection).channels().map(\.name)
                }
                for channel in channels where prefixes.contains(where: { BridgeConfiguration.matches($0, channel: channel) }) {
                    start(channel)
                }
            } catch {
                logger.warning("listing the registry's channels failed: \(error)")
            }
            threads.pause(.seconds(2))
        }
    }
}
