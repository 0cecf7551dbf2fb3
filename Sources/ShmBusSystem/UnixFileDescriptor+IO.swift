import CShmBusLinux
import Glibc

/// Reading, writing and pipes, with the argument labels of swift-system's
/// `FileDescriptor`, so code written against either reads the same.
extension UnixFileDescriptor {
    /// `read(2)` into `buffer`; returns the number of bytes read, 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try withRawValue { (fd) throws(SystemError) in
            try systemCall("read", context: "fd \(fd)", retryingOnInterrupt: retryOnInterrupt) {
                Glibc.read(fd, buffer.baseAddress, buffer.count)
            }
        }
    }

    /// `write(2)` of `buffer`; returns the number of bytes written, which may be fewer.
    public func write(_ buffer: UnsafeRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try withRawValue { (fd) throws(SystemError) in
            try systemCall("write", context: "fd \(fd)", retryingOnInterrupt: retryOnInterrupt) {
                Glibc.write(fd, buffer.baseAddress, buffer.count)
            }
        }
    }

    /// `write(2)` until every byte of `bytes` is written; returns their count.
    @discardableResult
    public func writeAll(_ bytes: some Sequence<UInt8>) throws(SystemError) -> Int {
        let array = Array(bytes)
        // Array.withUnsafeBytes rethrows untyped errors; the loop reports through a Result.
        let result = array.withUnsafeBytes { all -> Result<Int, SystemError> in
            var written = 0
            while written < all.count {
                do throws(SystemError) {
                    written += try write(UnsafeRawBufferPointer(rebasing: all[written...]))
                } catch {
                    return .failure(error)
                }
            }
            return .success(written)
        }
        return try result.get()
    }

    /// A new pipe (`pipe2(O_CLOEXEC)`): bytes written to `write` are read from `read`.
    public static func pipe() throws(SystemError) -> (read: UnixFileDescriptor, write: UnixFileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try systemCall("pipe2") { shmbus_pipe_cloexec(&fds) }
        return (UnixFileDescriptor(taking: fds[0]), UnixFileDescriptor(taking: fds[1]))
    }

    /// `open(2)` of `path` with `flags` (`O_CLOEXEC` is added).
    public static func open(_ path: String, _ flags: Int32) throws(SystemError) -> UnixFileDescriptor {
        UnixFileDescriptor(taking: try systemCall("open", context: path) { Glibc.open(path, flags | O_CLOEXEC) })
    }
}
