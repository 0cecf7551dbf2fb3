import CShmBusLinux
import Foundation
import Glibc
import Locking
import Synchronization
import SystemPackage

/// A child process started with `posix_spawn`, with a clean signal mask.
///
/// Foundation's `Process` passes on the spawning thread's signal mask, and Swift's
/// threads block most signals, so its children cannot be stopped with SIGTERM and a
/// child `sh` never sees SIGCHLD. This type spawns through `shmbus_spawn`, which
/// resets the mask and dispositions, so children behave as if started from a shell.
public final class ChildProcess: Sendable {
    /// How one of the child's standard streams is connected.
    public enum Stream: Sendable {
        /// The parent's own stream.
        case inherit
        /// `/dev/null`.
        case null
        /// A new pipe; the parent's end is in ``standardInput``/``standardOutput``/``standardError``.
        case pipe
        /// This descriptor (the caller keeps it).
        case fileDescriptor(Int32)
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signaled(let signal): "killed by signal \(signal)"
            }
        }
    }

    public let pid: pid_t
    /// The parent's end of a `.pipe` stdin, which the caller writes to; see
    /// ``closeStandardInput()``.
    public let standardInput: FileDescriptor?
    private let inputClosed = Atomic(false)
    /// The parent's end of a `.pipe` stdout, which the caller reads from.
    public let standardOutput: FileDescriptor?
    /// The parent's end of a `.pipe` stderr.
    public let standardError: FileDescriptor?
    private let termination = Lock<Termination?>(nil)

    /// Spawns `executable` (a path, or a name looked up on `PATH`) with `arguments`.
    ///
    /// - Parameter inheriting: extra descriptors passed to the child under the same
    ///   numbers (their close-on-exec flag is cleared in the child by `dup2`).
    public init(
        _ executable: String, _ arguments: [String] = [], environment: [String: String]? = nil,
        stdin: Stream = .null, stdout: Stream = .inherit, stderr: Stream = .inherit, inheriting: [Int32] = []
    ) throws {
        guard let path = executable.contains("/") ? executable : PrivateBus.findExecutable(executable) else {
            throw DBusError.failed("\(executable): command not found on PATH")
        }
        var map: [Int32] = []
        var parentEnds: [FileDescriptor?] = [nil, nil, nil]
        var childEnds: [Int32] = []
        defer { for fd in childEnds { Glibc.close(fd) } }
        for (target, stream) in [stdin, stdout, stderr].enumerated() {
            switch stream {
            case .inherit:
                continue
            case .null:
                let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
                guard fd >= 0 else { throw Errno(rawValue: errno) }
                childEnds.append(fd)
                map += [fd, Int32(target)]
            case .pipe:
                var fds: [Int32] = [-1, -1]
                guard shmbus_pipe_cloexec(&fds) == 0 else { throw Errno(rawValue: errno) }
                let (childEnd, parentEnd) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
                childEnds.append(childEnd)
                parentEnds[target] = FileDescriptor(rawValue: parentEnd)
                map += [childEnd, Int32(target)]
            case .fileDescriptor(let fd):
                map += [fd, Int32(target)]
            }
        }
        for fd in inheriting { map += [fd, fd] }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings([path] + arguments) { argv in
            withCStrings(env) { envp in
                map.withUnsafeBufferPointer { shmbus_spawn(path, argv, envp, $0.baseAddress, Int32(map.count / 2), &pid) }
            }
        }
        guard rc == 0 else {
            for end in parentEnds { try? end?.close() }
            throw DBusError.failed("cannot start \(path): \(Errno(rawValue: rc))")
        }
        self.pid = pid
        standardInput = parentEnds[0]
        standardOutput = parentEnds[1]
        standardError = parentEnds[2]
    }

    /// Closes the parent's end of a `.pipe` stdin (the child reads end of file). Idempotent.
    public func closeStandardInput() {
        guard !inputClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? standardInput?.close()
    }

    deinit {
        closeStandardInput()
        try? standardOutput?.close()
        try? standardError?.close()
    }

    /// Sends `signal` to the child (`kill(2)`); a child already reaped is left alone.
    public func signal(_ signal: Int32) {
        termination.withLock { ended in
            if ended == nil { _ = kill(pid, signal) }
        }
    }

    /// Waits for the child to end (`waitpid`), blocking the calling thread.
    @discardableResult
    public func waitUntilExit() -> Termination {
        if let ended = termination.withLock({ $0 }) { return ended }
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(pid, &status, 0) } while rc < 0 && errno == EINTR
        let ended: Termination
        if rc < 0 {
            ended = .exited(-1)
        } else if status & 0x7F == 0 {
            ended = .exited((status >> 8) & 0xFF)
        } else {
            ended = .signaled(status & 0x7F)
        }
        return termination.withLock { stored in
            if stored == nil { stored = ended }
            return stored ?? ended
        }
    }

    /// Waits for the child on a dedicated thread, without blocking a task's thread.
    @discardableResult
    public func exit() async -> Termination {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: self.waitUntilExit()) }
            thread.start()
        }
    }

    /// Whether the child has ended (reaping it if so), without blocking.
    public var hasExited: Bool {
        if termination.withLock({ $0 }) != nil { return true }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        guard rc == pid else { return false }
        let ended: Termination = status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
        termination.withLock { if $0 == nil { $0 = ended } }
        return true
    }

    /// Reads the child's stdout and stderr pipes to their ends on a thread of its own,
    /// so that a task waiting for a child never blocks a thread of the concurrency pool
    /// (with two cores, two blocked pool threads stall every task of the process,
    /// including the services the child may be talking to).
    public func collectOutput() async throws -> (stdout: Data, stderr: Data) {
        let out = standardOutput
        let err = standardError
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    continuation.resume(returning: try Self.readBoth(out, err))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    /// Reads one line (without its newline) from the child's stdout on a thread of its
    /// own; nil at end of file.
    public func readLine() async throws -> String? {
        guard let out = standardOutput else { return nil }
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                do {
                    while true {
                        let n = try withUnsafeMutableBytes(of: &byte) { try out.read(into: $0, retryOnInterrupt: true) }
                        if n == 0 {
                            continuation.resume(returning: line.isEmpty ? nil : String(decoding: line, as: UTF8.self))
                            return
                        }
                        if byte == UInt8(ascii: "\n") { break }
                        line.append(byte)
                    }
                    continuation.resume(returning: String(decoding: line, as: UTF8.self))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    /// The child's stdout as lines (without newlines), read on a thread of its own in
    /// 64 KiB blocks until end of file. For chatty children; do not mix with
    /// ``readLine()``.
    public func lines() -> AsyncThrowingStream<String, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: String.self)
        guard let out = standardOutput else {
            continuation.finish()
            return stream
        }
        let thread = Thread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            do {
                while true {
                    let n = try buffer.withUnsafeMutableBytes { try out.read(into: $0, retryOnInterrupt: true) }
                    if n == 0 { break }
                    var start = 0
                    for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
                        pending.append(contentsOf: buffer[start..<i])
                        continuation.yield(String(decoding: pending, as: UTF8.self))
                        pending.removeAll(keepingCapacity: true)
                        start = i + 1
                    }
                    pending.append(contentsOf: buffer[start..<n])
                }
                if !pending.isEmpty { continuation.yield(String(decoding: pending, as: UTF8.self)) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.start()
        return stream
    }

    /// Reads two pipes to their ends, whichever has data (`poll`), so that a child
    /// filling one pipe never blocks on it while the other is read.
    private static func readBoth(_ first: FileDescriptor?, _ second: FileDescriptor?) throws -> (Data, Data) {
        var outputs = [Data(), Data()]
        var open = [first, second]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open.contains(where: { $0 != nil }) {
            var fds = open.map { pollfd(fd: $0?.rawValue ?? -1, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            for i in 0..<2 where fds[i].revents != 0 {
                guard let fd = open[i] else { continue }
                let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
                if n == 0 { open[i] = nil } else { outputs[i].append(contentsOf: buffer[0..<n]) }
            }
        }
        return (outputs[0], outputs[1])
    }

    /// Reads the child's stdout pipe to its end, blocking the calling thread. From a
    /// task, use ``collectOutput()``.
    public func readAllOutput() throws -> Data {
        guard let fd = standardOutput else { return Data() }
        return try Self.readAll(fd)
    }

    /// Reads `fd` to end of file.
    public static func readAll(_ fd: FileDescriptor) throws -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
            if n == 0 { return data }
            data.append(contentsOf: buffer[0..<n])
        }
    }
}

/// Calls `body` with a NULL-terminated C array of the strings.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
