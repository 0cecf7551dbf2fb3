import CShmBusLinux
import Glibc

/// Copying between files in the kernel, moving the file position, and a descriptor's
/// status flags.
extension UnixFileDescriptor {
    /// `copy_file_range(2)` of up to `length` bytes from this file at `sourceOffset` to
    /// `destination` at `destinationOffset`, flags 0: the kernel copies (for a memfd
    /// destination, page cache to shmem) and no byte passes through this process.
    /// Returns the bytes copied, 0 at this file's end; may copy fewer than asked.
    public func copyFileRange(
        from sourceOffset: Int, to destination: UnixFileDescriptor, at destinationOffset: Int, length: Int
    ) throws(SystemError) -> Int {
        var input = Int64(sourceOffset)
        var output = Int64(destinationOffset)
        let copied = try withRawValue { (source) throws(SystemError) in
            try destination.withRawValue { (target) throws(SystemError) in
                try systemCall("copy_file_range", context: "fd \(source) at \(sourceOffset) to fd \(target), \(length) bytes") {
                    shmbus_copy_file_range(source, &input, target, &output, length)
                }
            }
        }
        return Int(copied)
    }

    /// `sendfile(2)` of up to `length` bytes from this file at `sourceOffset` to
    /// `destination` at its file position (which advances): copy_file_range's fallback
    /// where the two file systems do not support it, also a copy in the kernel.
    /// Returns the bytes copied, 0 at this file's end.
    public func sendFile(from sourceOffset: Int, to destination: UnixFileDescriptor, length: Int) throws(SystemError) -> Int {
        var input = Int64(sourceOffset)
        let copied = try withRawValue { (source) throws(SystemError) in
            try destination.withRawValue { (target) throws(SystemError) in
                try systemCall("sendfile", context: "fd \(source) at \(sourceOffset) to fd \(target), \(length) bytes") {
                    shmbus_sendfile(target, source, &input, length)
                }
            }
        }
        return Int(copied)
    }

    /// `lseek(2)` to `offset` from the start (`SEEK_SET`); returns the new position.
    @discardableResult
    public func seek(to offset: Int) throws(SystemError) -> Int {
        try withRawValue { (fd) throws(SystemError) in
            Int(try systemCall("lseek", context: "fd \(fd) to \(offset)") { lseek(fd, off_t(offset), SEEK_SET) })
        }
    }

    /// `fcntl(F_GETFL)`: the access mode (`flags & O_ACCMODE`) and status flags.
    public func statusFlags() throws(SystemError) -> Int32 {
        try withRawValue { (fd) throws(SystemError) in
            try systemCall("fcntl(F_GETFL)", context: "fd \(fd)") { shmbus_get_status_flags(fd) }
        }
    }
}
