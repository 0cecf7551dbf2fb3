import Foundation
import ShmBusSystem
import TestSupport
import Testing

/// A real terminal for a program under test: a tmux server of its own (`tmux -L`, a
/// private socket) with one detached window of a fixed size running a shell script.
/// Keys go in with send-keys, the screen comes out with capture-pane, exactly as a
/// person at the terminal would type and see them.
final class TmuxSession: Sendable {
    let socket = "shmbus-test-\(UInt32.random(in: 0...UInt32.max))"
    let directory: URL

    /// Starts `script` (sh) in a `columns` x `rows` window.
    init(script: String, columns: Int = 160, rows: Int = 30) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(socket)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("run.sh").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        // A terminal as SSH or a desktop would give: TERM of tmux's own, the C locale.
        try await tmux(["-f", "/dev/null", "new-session", "-d", "-x", "\(columns)", "-y", "\(rows)", "sh \(path)"])
    }

    deinit {
        let child = try? ChildProcess("tmux", ["-L", socket, "kill-server"], stdout: .null, stderr: .null)
        child?.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }

    @discardableResult
    func tmux(_ arguments: [String]) async throws -> String {
        let (status, out, err) = try await BuiltProducts.run("tmux", ["-L", socket] + arguments)
        guard status == .exited(0) else { throw TmuxFailure(arguments: arguments, stderr: err) }
        return out
    }

    /// Types `keys` (tmux key names: `q`, `Enter`, `Escape`, or literal text with `-l`).
    func send(_ keys: String...) async throws {
        try await tmux(["send-keys", "-t", "0"] + keys)
    }

    func sendLiteral(_ text: String) async throws {
        try await tmux(["send-keys", "-t", "0", "-l", text])
    }

    /// What the pane shows now, line by line.
    func screen() async throws -> [String] {
        try await tmux(["capture-pane", "-p", "-t", "0"]).components(separatedBy: "\n")
    }

    /// A tmux format of the pane (`#{alternate_on}`, `#{cursor_flag}`…).
    func format(_ format: String) async throws -> String {
        try await tmux(["display-message", "-p", "-t", "0", format]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The screen once `predicate` holds for it; the last screen seen (and an issue
    /// recorded) if it never does within `timeout`, a bound against a program that never
    /// shows it, not a measure of how fast it does.
    @discardableResult
    func eventually(
        _ what: String, timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
        _ predicate: ([String]) -> Bool
    ) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        var screen = try await self.screen()
        while !predicate(screen) {
            guard ContinuousClock.now < deadline else {
                Issue.record("never on screen: \(what)\n\(screen.joined(separator: "\n"))", sourceLocation: sourceLocation)
                return screen
            }
            try await Task.sleep(for: .milliseconds(100))
            screen = try await self.screen()
        }
        return screen
    }
}

struct TmuxFailure: Error, CustomStringConvertible {
    var arguments: [String]
    var stderr: String
    var description: String { "tmux \(arguments.joined(separator: " ")) failed: \(stderr)" }
}
