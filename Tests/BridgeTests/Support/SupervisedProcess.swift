import Foundation
import Glibc
import ShmBusSystem

/// A process a test starts that cannot outlive the test process: it runs under an `sh`
/// that holds a pipe from this process and kills it (SIGKILL) when the pipe closes,
/// which ``stop()`` does, and so does this process's end, however it ends. Its output
/// goes to `log`. The supervisor prints the process's own pid first, so that a test can
/// signal the process itself (kill a server or a bridge mid-stream).
final class SupervisedProcess: Sendable {
    let pid: pid_t
    let log: URL
    let arguments: [String]
    private let supervisor: ChildProcess

    init(_ arguments: [String], log: URL, environment: [String: String]? = nil) async throws {
        let script = "\"$@\" >>\"$LOG\" 2>&1 </dev/null & pid=$!; echo $pid; read _; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null"
        var env = environment ?? ProcessInfo.processInfo.environment
        env["LOG"] = log.path
        supervisor = try ChildProcess("/bin/sh", ["-c", script, "sh"] + arguments, environment: env, stdin: .pipe, stdout: .pipe)
        guard let line = try await supervisor.readLine(), let pid = pid_t(line) else {
            supervisor.closeStandardInput()
            throw TestFailure("could not start \(arguments.joined(separator: " "))")
        }
        self.pid = pid
        self.log = log
        self.arguments = arguments
    }

    /// Sends `signal` to the process itself (not its supervisor).
    func signal(_ signal: Int32) {
        _ = kill(pid, signal)
    }

    /// Whether the process is still there (not exited, or exited and not yet reaped by
    /// its supervisor).
    var isRunning: Bool {
        guard kill(pid, 0) == 0 else { return false }
        let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // Field 3 of /proc/PID/stat, after the parenthesised command name.
        return !(state.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
    }

    /// Kills the process (if it still runs) and waits for its supervisor. Idempotent.
    func stop() {
        supervisor.closeStandardInput()
        supervisor.waitUntilExit()
    }

    /// Waits until the process exits by itself, at most `timeout`.
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    deinit {
        stop()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 50 ms until it holds, failing after `timeout` with `what`.
/// The timeout only keeps a broken test from hanging; no test measures it.
func waitUntil(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what())") }
        try await Task.sleep(for: .milliseconds(50))
    }
}
