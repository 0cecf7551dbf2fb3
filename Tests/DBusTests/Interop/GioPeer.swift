import DBus
import Foundation
import Glibc
import ShmBusSystem
import TestSupport
import Testing

/// The GLib peer (gio_peer.py, next to this file) as a child process: GDBus, a D-Bus
/// implementation that shares no code with libdbus, driven through PyGObject.
final class GioPeer: Sendable {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("gio_peer.py").path
    }

    let process: ChildProcess
    let command: String

    /// Starts `gio_peer.py command arguments…`; its stdin is a pipe it reads to
    /// the end: closing it (``finish()``, or this process ending) stops the peer.
    init(_ command: String, _ arguments: [String]) throws {
        self.command = command
        process = try ChildProcess(
            InteropTool.python, [Self.script, command] + arguments, stdin: .pipe, stdout: .pipe, stderr: .pipe)
    }

    /// The next line the peer prints, or nil at end of output.
    func line() async throws -> String? {
        try await process.readLine()
    }

    /// The next line, which must start with `word` and a space; returns the rest.
    func expectLine(_ word: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        guard let line = try await line() else {
            let (status, _, err) = try await finish()
            Issue.record("gio_peer.py \(command) ended (\(status)) before '\(word)': \(err)", sourceLocation: sourceLocation)
            throw DBusError.failed("gio_peer.py ended early")
        }
        guard line.hasPrefix(word + " ") else {
            Issue.record("gio_peer.py \(command): expected '\(word) …', got '\(line)'", sourceLocation: sourceLocation)
            throw DBusError.failed("unexpected line from gio_peer.py")
        }
        return String(line.dropFirst(word.count + 1))
    }

    /// Closes the peer's stdin and waits for it: its exit status, the rest of its
    /// stdout, and its stderr.
    @discardableResult
    func finish() async throws -> (status: ChildProcess.Termination, stdout: String, stderr: String) {
        process.closeStandardInput()
        let (out, err) = try await process.collectOutput()
        let status = await process.exit()
        return (status, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }
}

/// A GDBus service (`gio_peer.py serve`) on the shared test bus, under its own name
/// and path.
struct GioService: Sendable {
    static let interfaceName = "org.shmbus.Test.GioPeer1"

    let peer: GioPeer
    /// Its well-known name.
    let name: String
    /// The unique name GDBus reported for its connection.
    let uniqueName: String
    let path: ObjectPath

    /// Starts a peer under `name` at `path` (new unique ones by default).
    static func start(name: String? = nil, path: ObjectPath? = nil) async throws -> GioService {
        let suffix = TestBus.uniqueSuffix()
        let name = name ?? "org.shmbus.Test.Gio.\(suffix)"
        let path = path ?? ObjectPath("/org/shmbus/test/gio").appending(escaped: suffix)
        let peer = try GioPeer("serve", [try InteropService.address, name, path.rawValue])
        let uniqueName = try await peer.expectLine("ready")
        return GioService(peer: peer, name: name, uniqueName: uniqueName, path: path)
    }

    func call(
        _ client: DBusConnection, _ method: String, _ arguments: [DBusValue] = [], interface: String = interfaceName,
        path: ObjectPath? = nil, timeout: Duration? = .seconds(30)
    ) async throws -> [DBusValue] {
        try await client.call(
            destination: name, path: path ?? self.path, interface: interface, method: method, arguments, timeout: timeout)
    }

    /// Stops the peer, expecting a clean exit.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (status, _, err) = try await peer.finish()
        #expect(status == .exited(0), "gio_peer.py serve: \(err)", sourceLocation: sourceLocation)
    }
}

/// Memfds for the fd-passing tests.
enum InteropFiles {
    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// A new memfd called `name` holding `content`, written with `write` so that its
    /// offset is left at the end (a peer must read from offset 0 itself).
    static func memfd(_ name: String, _ content: [UInt8]) throws -> UnixFileDescriptor {
        let fd = try UnixFileDescriptor.memfd(name: name)
        var done = 0
        while done < content.count {
            let n = content.withUnsafeBytes { write(fd.rawValue, $0.baseAddress! + done, $0.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw DBusError.failed("write: \(errnoText())") }
            done += n
        }
        return fd
    }

    /// What `/proc/self/fd/N` links to, such as `/memfd:name (deleted)`.
    static func link(_ fd: UnixFileDescriptor) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd.rawValue)")) ?? "?"
    }

    /// `count` pseudo-random bytes from `seed` (SplitMix64), the same on every run.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            withUnsafeBytes(of: z.littleEndian) { out.append(contentsOf: $0) }
        }
        return Array(out.prefix(count))
    }
}

enum InteropWait {
    /// The first element of `sequence`, or nil when none comes within `timeout`.
    static func first<S: AsyncSequence & Sendable>(_ sequence: S, timeout: Duration = .seconds(30)) async throws -> S.Element?
    where S.Element: Sendable {
        try await withThrowingTaskGroup(of: S.Element?.self) { group in
            group.addTask {
                for try await element in sequence { return element }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
