import ArgumentParser
import DBus
import Dispatch
import Foundation
import Logging
import ShmBusProtocol
import ShmBusRegistry
import ShmBusSystem

struct Daemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the registry daemon, owner of org.shmbus.Registry1.",
        discussion: """
            Started by hand, by a service manager, or by D-Bus activation (then it joins the bus \
            that started it). SIGTERM and SIGINT stop it cleanly. Persistent segments are handed to \
            a keeper process (`shmbus keeper`, started when needed), so that they outlive the \
            daemon: the next one takes them back.
            """)

    @OptionGroup var bus: BusOption

    @Option(help: "Segments one connection may register at once (1 or more).")
    var maxSegmentsPerConnection = RegistryConfiguration().maxSegmentsPerConnection

    @Option(help: "Total capacity one connection may register (e.g. 64GiB; more than 0).")
    var maxBytesPerConnection = ByteCount(RegistryConfiguration().maxBytesPerConnection)

    @Option(help: "Segments in the whole registry (1 or more).")
    var maxSegments = RegistryConfiguration().maxSegments

    @Option(help: "Segments one Unix user may hold across its connections, persistent ones included (1 or more).")
    var maxSegmentsPerUser = RegistryConfiguration().maxSegmentsPerUser

    @Option(help: "Total capacity one Unix user may hold (more than 0).")
    var maxBytesPerUser = ByteCount(RegistryConfiguration().maxBytesPerUser)

    @Option(help: "Total capacity of one Unix user's persistent segments, including those its publishers left (more than 0).")
    var maxPersistentBytesPerUser = ByteCount(RegistryConfiguration().maxPersistentBytesPerUser)

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(
        help: ArgumentHelp(
            "Log a warning for a call of a client with nothing else pending that takes longer than this in the registry (0: never).",
            valueName: "milliseconds"))
    var slowCallMs = 100

    @Flag(help: "Do not hand persistent segments to a keeper: they then end with this process.")
    var noKeeper = false

    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://ADDRESS:PORT/metrics (off unless given; loopback only, see --metrics-any-address).",
            discussion: "For example 127.0.0.1:9464 or [::1]:9464; port 0 picks a free one, logged at notice level.",
            valueName: "address:port"))
    var metrics: String?

    @Flag(help: "Let --metrics listen on an address other than loopback (the figures name every channel and publisher).")
    var metricsAnyAddress = false

    /// A limit below 1 is not a policy but a registry that refuses every segment, and a
    /// negative one used to be taken as it came.
    func validate() throws {
        if maxSegmentsPerConnection < 1 {
            throw ValidationError("--max-segments-per-connection must be 1 or more (got \(maxSegmentsPerConnection))")
        }
        if maxBytesPerConnection.bytes == 0 { throw ValidationError("--max-bytes-per-connection must be more than 0") }
        if maxSegments < 1 { throw ValidationError("--max-segments must be 1 or more (got \(maxSegments))") }
        if maxSegmentsPerUser < 1 { throw ValidationError("--max-segments-per-user must be 1 or more (got \(maxSegmentsPerUser))") }
        if maxBytesPerUser.bytes == 0 { throw ValidationError("--max-bytes-per-user must be more than 0") }
        if maxPersistentBytesPerUser.bytes == 0 { throw ValidationError("--max-persistent-bytes-per-user must be more than 0") }
        if slowCallMs < 0 { throw ValidationError("--slow-call-ms must be 0 or more (got \(slowCallMs))") }
        if metricsAnyAddress, metrics == nil { throw ValidationError("--metrics-any-address needs --metrics") }
    }

    func run() async throws {
        CommandLogging.bootstrap(level: logLevel)
        let logger = Logger(label: "org.shmbus.registry")
        try await reportingFailures {
            // Each segment holds descriptors: take all the hard limit allows (the soft
            // one is often 1,024, for select(2), which nothing here uses).
            do {
                let limit = try FileDescriptorLimit.raiseSoftToHard()
                logger.debug("RLIMIT_NOFILE", metadata: ["soft": "\(limit.soft)", "hard": "\(limit.hard)"])
            } catch {
                logger.warning("cannot raise RLIMIT_NOFILE", metadata: ["error": "\(error)"])
            }
            var configuration = RegistryConfiguration()
            configuration.maxSegmentsPerConnection = maxSegmentsPerConnection
            configuration.maxBytesPerConnection = maxBytesPerConnection.bytes
            configuration.maxSegments = maxSegments
            configuration.maxSegmentsPerUser = maxSegmentsPerUser
            configuration.maxBytesPerUser = maxBytesPerUser.bytes
            configuration.maxPersistentBytesPerUser = maxPersistentBytesPerUser.bytes
            configuration.slowCallThreshold = slowCallMs > 0 ? .milliseconds(slowCallMs) : nil
            let resolved = bus.resolved(activated: true)
            configuration.keepsPersistentSegments = !noKeeper
            configuration.keeperCommand = [
                InstallService.currentExecutable(), "keeper", "--bus", BusOption.argument(for: resolved), "--log-level", "\(logLevel)",
            ]
            let connection = try await DBusConnection.connect(
                to: resolved, scheduling: configuration.callScheduling, logger: logger)
            // Parsed (and resolved) before the registry takes its name, so that a bad
            // address fails the start instead of leaving a daemon without its metrics.
            let metricsAddress = try metrics.map { text throws(ShmBusError) in try MetricsAddress(parsing: text) }
            try metricsAddress?.checkServable(anyAddress: metricsAnyAddress)
            let service = try await RegistryService.start(on: connection, configuration: configuration, logger: logger)
            let server: MetricsServer?
            do {
                server = try metricsAddress.map { address throws(ShmBusError) in
                    try MetricsServer(listeningOn: address, anyAddress: metricsAnyAddress, logger: logger) { await service.metricsText() }
                }
            } catch {
                service.stop()
                throw error
            }
            if let server { logger.notice("serving metrics", metadata: ["url": "http://\(server.address)/metrics"]) }
            let signals = SignalHandlers([SIGTERM, SIGINT]) { signal in
                logger.info("stopping", metadata: ["signal": "\(signal)"])
                service.stop()
            }
            await service.run()
            server?.stop()
            withExtendedLifetime(signals) {}
            logger.info("registry stopped")
        }
    }
}

/// Handles termination signals on a dispatch queue.
///
/// The signals are unblocked first: a process started by a Swift parent (or any parent
/// that blocked them) inherits a mask in which they are blocked.
final class SignalHandlers {
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        sources = signals.map { number in
            Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }

    deinit {
        for source in sources { source.cancel() }
    }
}
