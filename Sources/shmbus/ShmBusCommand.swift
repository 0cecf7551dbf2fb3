import ArgumentParser
import Logging

@main
struct ShmBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmbus",
        abstract: "Share large data between processes through sealed shared memory, with D-Bus as the registry.",
        version: "0.1.0",
        subcommands: [
            Demo.self, Daemon.self, Publish.self, Cat.self, Subscribe.self, ListRegistry.self, Stat.self, InstallService.self, Bench.self, BenchWorker.self,
        ])
}

/// Logging for the command line: to stderr, at the level asked for.
enum CommandLogging {
    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
