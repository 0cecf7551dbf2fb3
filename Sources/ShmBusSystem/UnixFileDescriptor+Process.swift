import CShmBusLinux
import Glibc

/// Process handles (pidfds) and directory-relative opens, for finding out things about
/// another process without racing with PID reuse.
extension UnixFileDescriptor {
    /// A pidfd of `pid` (`pidfd_open(2)`, through `shmbus_pidfd_open`): it names that
    /// process and no later one that reuses the number.
    public static func pidfd(of pid: pid_t) throws(SystemError) -> UnixFileDescriptor {
        UnixFileDescriptor(taking: try systemCall("pidfd_open", context: "pid \(pid)") { shmbus_pidfd_open(pid) })
    }

    /// Whether the process this pidfd names still exists (`pidfd_send_signal(2)` of
    /// signal 0): while it does, its PID cannot name another process.
    public func processIsAlive() -> Bool {
        withRawValue { shmbus_pidfd_send_signal($0, 0) } == 0
    }

    /// A handle on the directory `path` that only names it (`open(2)` with `O_PATH |
    /// O_DIRECTORY`, through `shmbus_open_directory_path`), for ``openAt(_:_:)``.
    public static func directoryPath(_ path: String) throws(SystemError) -> UnixFileDescriptor {
        UnixFileDescriptor(taking: try systemCall("open", context: path) { shmbus_open_directory_path(path) })
    }

    /// Reads until end of file or `limit` bytes, whichever comes first (`read(2)`).
    public func readAll(limit: Int) throws(SystemError) -> [UInt8] {
        var out: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { chunk.deallocate() }
        while out.count < limit {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[..<min(4096, limit - out.count)]))
            if n == 0 { break }
            out += chunk[..<n]
        }
        return out
    }

    /// `openat(2)` of `name` relative to this directory (`O_CLOEXEC` is added).
    public func openAt(_ name: String, _ flags: Int32) throws(SystemError) -> UnixFileDescriptor {
        let fd = try withRawValue { (raw: Int32) throws(SystemError) -> Int32 in
            try systemCall("openat", context: name) { Glibc.openat(raw, name, flags | O_CLOEXEC) }
        }
        return UnixFileDescriptor(taking: fd)
    }

    /// `fstat(2)`.
    public func status() throws(SystemError) -> stat {
        var info = stat()
        _ = try withRawValue { (raw: Int32) throws(SystemError) -> Int32 in try systemCall("fstat") { fstat(raw, &info) } }
        return info
    }
}
