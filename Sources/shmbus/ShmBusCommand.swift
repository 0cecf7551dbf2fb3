import Foundation
import ArgumentParser
import Logging

@main
struct ShmBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shmbus",
        abstract: "Share large data between processes through sealed shared memory, with D-Bus as the registry.",
        version: "0.1.0",
        subcommands: [
            Demo.self, Daemon.self, Keeper.self, Publish.self, Cat.self, Subscribe.self, ListRegistry.self, Top.self, Stat.self, BridgeCommand.self, InstallService.self, Bench.self, BenchWorker.self,
        ])

    /// argument-parser's `main`, except that a failed parse is first checked for an
    /// unknown option, which argument-parser would report as a missing required one
    /// (see ``UnknownOption``). Errors from `run()` pass through untouched.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot(arguments)
        } catch {
            if exitCode(for: error) != .success, let unknown = UnknownOption.first(in: arguments, root: self) {
                FileHandle.standardErrorWrite(unknown.message(root: self) + "\n")
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
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
