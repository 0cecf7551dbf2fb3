import CShmBusLinux
import Foundation
import Glibc
import Locking
import Synchronization
import SystemPackage

/// A child process started with `posix_spawn(3)`, with a clean signal mask.
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
        /// This descriptor, borrowed: the child gets its own copy (`dup2`), the caller
        /// keeps this one.
        case fileDescriptor(UnixFileDescriptor)
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
    public let standardInput: UnixFileDescriptor?
    /// The parent's end of a `.pipe` stdout, which the caller reads from.
    public let standardOutput: UnixFileDescriptor?
    /// The parent's end of a `.pipe` stderr.
    public let standardError: UnixFileDescriptor?
    private let termination = Lock<Termination?>(nil)

    /// Spawns `executable` (a path, or a name looked up on `PATH`) with `arguments`
    /// (`posix_spawn(3)`, through `shmbus_spawn`).
    ///
    /// - Parameter inheriting: extra descriptors passed to the child under the same
    ///   numbers (borrowed; their close-on-exec flag is cleared in the child by `dup2`).
    /// - Throws: ``SystemError`` naming `posix_spawn` (`ENOENT` for a name not on
    ///   `PATH`), or the `open`/`pipe2` that set up a stream.
    public init(
        _ executable: String, _ arguments: [String] = [], environment: [String: String]? = nil,
        stdin: Stream = .null, stdout: Stream = .inherit, stderr: Stream = .inherit, inheriting: [UnixFileDescriptor] = []
    ) throws(SystemError) {
        guard let path = executable.contains("/") ? executable : Self.findExecutable(executable) else {
            throw SystemError(.noSuchFileOrDirectory, call: "posix_spawn", context: "\(executable): command not found on PATH")
        }
        // The child's ends are closed in this process when the init returns (the child
        // has its dup2'ed copies by then); the parent's ends are kept in the object.
        var map: [Int32] = []
        var parentEnds: [UnixFileDescriptor?] = [nil, nil, nil]
        var childEnds: [UnixFileDescriptor] = []
        for (target, stream) in [stdin, stdout, stderr].enumerated() {
            switch stream {
            case .inherit:
                continue
            case .null:
                let null = try UnixFileDescriptor.open("/dev/null", O_RDWR)
                childEnds.append(null)
                map += [null.rawValue, Int32(target)]
            case .pipe:
                let pipe = try UnixFileDescriptor.pipe()
                let (childEnd, parentEnd) = target == 0 ? (pipe.read, pipe.write) : (pipe.write, pipe.read)
                childEnds.append(childEnd)
                parentEnds[target] = parentEnd
                map += [childEnd.rawValue, Int32(target)]
            case .fileDescriptor(let fd):
                childEnds.append(fd)
                map += [fd.rawValue, Int32(target)]
            }
        }
        for fd in inheriting { map += [fd.rawValue, fd.rawValue] }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withExtendedLifetime((childEnds, inheriting)) {
            withCStrings([path] + arguments) { argv in
                withCStrings(env) { envp in
                    map.withUnsafeBufferPointer { shmbus_spawn(path, argv, envp, $0.baseAddress, Int32(map.count / 2), &pid) }
                }
            }
        }
        // posix_spawn returns the error number instead of setting errno.
        guard rc == 0 else { throw SystemError(Errno(rawValue: rc), call: "posix_spawn", context: path) }
        self.pid = pid
        standardInput = parentEnds[0]
        standardOutput = parentEnds[1]
        standardError = parentEnds[2]
    }

    /// The first executable called `name` on `PATH` (`access(X_OK)`).
    public static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Closes the parent's end of a `.pipe` stdin (the child reads end of file).
    /// Idempotent: the descriptor is closed once, later calls do nothing. The other
    /// pipes close with this object.
    public func closeStandardInput() {
        guard standardInput?.isOpen == true else { return }
        try? standardInput?.close()
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
}

/// Calls `body` with a NULL-terminated C array of the strings.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
