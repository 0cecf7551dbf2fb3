import ArgumentParser
import DBus
import Foundation
import Logging
import ShmBusRegistry
import ShmBusSystem

struct Keeper: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hold persistent segments while the registry restarts (org.shmbus.Keeper1).",
        discussion: """
            The registry starts it when it first has a persistent segment (or the bus does, through \
            D-Bus activation); there is rarely a reason to run it by hand. It holds descriptors only, \
            serves only its own Unix user, and exits after it has held nothing for --idle-exit seconds \
            or when its bus goes away.
            """)

    @OptionGroup var bus: BusOption

    @Option(help: "Exit after holding nothing for this many seconds (1 or more).")
    var idleExit = 30

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if idleExit < 1 { throw ValidationError("--idle-exit must be 1 or more (got \(idleExit))") }
    }

    func run() async throws {
        // A session of its own: the keeper must outlive its registry, and a Ctrl-C or
        // SIGHUP meant for the registry's terminal or process group must not reach it.
        // (It fails harmlessly for a process group leader, such as one started by hand.)
        _ = setsid()
        CommandLogging.bootstrap(level: logLevel)
        let logger = Logger(label: "org.shmbus.keeper")
        try await reportingFailures {
            // It holds a descriptor or two per persistent segment (the registry's limit
            // is raised the same way).
            _ = try? FileDescriptorLimit.raiseSoftToHard()
            let connection = try await DBusConnection.connect(to: bus.resolved(activated: true), logger: logger)
            let service = try await KeeperService.start(on: connection, idleExit: .seconds(idleExit), logger: logger)
            let signals = SignalHandlers([SIGTERM, SIGINT]) { signal in
                logger.info("stopping", metadata: ["signal": "\(signal)"])
                service.stop()
            }
            await service.run()
            withExtendedLifetime(signals) {}
        }
    }
}
