import ArgumentParser
import DBus
import ShmBus
import ShmBusBridge

/// Turns any error into one or two lines on stderr and a distinct exit code
/// (sysexits.h values), never a stack trace.
enum CommandFailure {
    static func exitCode(for error: any Error) -> Int32 {
        if let error = error as? ShmBusError {
            switch error.code {
            case .notFound: return 66            // EX_NOINPUT
            case .badSegment, .notSealed: return 65  // EX_DATAERR
            case .invalidArgument: return 64     // EX_USAGE
            case .accessDenied: return 77        // EX_NOPERM
            case .quotaExceeded, .channelBusy: return 75  // EX_TEMPFAIL
            case .registryUnavailable, .bus: return 69    // EX_UNAVAILABLE
            case .system: return 71              // EX_OSERR
            case .cancelled: return 75           // EX_TEMPFAIL: interrupted, try again
            }
        }
        if let error = error as? FileFailure { return error.kind.exitCode }
        if let error = error as? BridgeError {
            switch error {
            case .invalidArgument: return 64     // EX_USAGE
            case .badMessage: return 65          // EX_DATAERR
            case .nats: return 69                // EX_UNAVAILABLE
            case .shmBus(let error, _): return exitCode(for: error)
            }
        }
        if error is DBusError { return 69 }
        return 1
    }

    static func message(for error: any Error) -> String {
        switch error {
        case let error as ShmBusError:
            // The library's messages carry their own hints (how to start the registry…).
            return "shmbus: \(error.message)"
        case let error as FileFailure:
            return "shmbus: \(error.message)"
        case let error as DBusError:
            return "shmbus: \(error.message.isEmpty ? error.name : error.message)"
        default:
            return "shmbus: \(error)"
        }
    }
}

/// Runs a command body, reporting failures the shell way.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as CleanExit {
        throw error
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardErrorWrite(CommandFailure.message(for: error) + "\n")
        throw ExitCode(CommandFailure.exitCode(for: error))
    }
}

import Foundation

extension FileHandle {
    static func standardErrorWrite(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
