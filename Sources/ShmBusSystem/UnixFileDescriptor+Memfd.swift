import CShmBusLinux
import Glibc

/// Anonymous shared memory files (`memfd_create(2)`) and their seals. Swift's Glibc
/// module does not import `memfd_create`, `MFD_*` or `F_SEAL_*`; the CShmBusLinux shim,
/// compiled with `_GNU_SOURCE`, does.
extension UnixFileDescriptor {
    /// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: a new, empty memfd that
    /// can be sealed. `name` is shown in `/proc/PID/fd` (as `/memfd:NAME`) only.
    public static func memfd(name: String) throws(SystemError) -> UnixFileDescriptor {
        let fd = try systemCall("memfd_create", context: name) {
            shmbus_memfd_create(name, shmbus_MFD_CLOEXEC | shmbus_MFD_ALLOW_SEALING)
        }
        return UnixFileDescriptor(taking: fd)
    }

    /// `ftruncate(2)`: sets the file's size.
    public func truncate(to size: Int) throws(SystemError) {
        _ = try withRawValue { (fd) throws(SystemError) in
            try systemCall("ftruncate", context: "fd \(fd), \(size) bytes") { ftruncate(fd, off_t(size)) }
        }
    }

    /// `fallocate(fd, 0, offset, length)`: allocates the file's pages in that range
    /// without changing its size or a byte already written (for a memfd: zeroed shmem
    /// pages where there were none). Needs a descriptor opened for writing.
    public func allocate(offset: Int, length: Int) throws(SystemError) {
        _ = try withRawValue { (fd) throws(SystemError) in
            try systemCall("fallocate", context: "fd \(fd), \(length) bytes at \(offset)") {
                shmbus_fallocate(fd, Int64(offset), Int64(length))
            }
        }
    }

    /// `fstat(2)`'s `st_size`: the file's size in bytes.
    public func size() throws(SystemError) -> Int {
        var info = stat()
        _ = try withRawValue { (fd) throws(SystemError) in try systemCall("fstat", context: "fd \(fd)") { fstat(fd, &info) } }
        return Int(info.st_size)
    }

    /// `fcntl(F_ADD_SEALS)`: adds `seals` (fails with `EPERM` once `F_SEAL_SEAL` is set,
    /// `EBUSY` for `F_SEAL_WRITE` while writable mappings exist).
    public func addSeals(_ seals: FileSeals) throws(SystemError) {
        _ = try withRawValue { (fd) throws(SystemError) in
            try systemCall("fcntl(F_ADD_SEALS)", context: "fd \(fd), \(seals)") { shmbus_add_seals(fd, seals.rawValue) }
        }
    }

    /// `fcntl(F_GET_SEALS)`: the seals set so far. Fails with `EINVAL` for a file that
    /// does not support sealing (not a memfd, or one created without
    /// `MFD_ALLOW_SEALING`).
    public func seals() throws(SystemError) -> FileSeals {
        try withRawValue { (fd) throws(SystemError) in
            FileSeals(rawValue: try systemCall("fcntl(F_GET_SEALS)", context: "fd \(fd)") { shmbus_get_seals(fd) })
        }
    }

    /// Whether this is a memfd: `readlink("/proc/self/fd/N")` names `/memfd:NAME (deleted)`.
    public var isMemfd: Bool {
        withRawValue { fd in
            var buffer = [CChar](repeating: 0, count: 512)
            let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
            guard n > 0 else { return false }
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix("/memfd:")
        }
    }

    /// `open("/proc/self/fd/N", O_RDONLY | O_CLOEXEC)`: a new open file description of
    /// the same file that cannot be used to write, unlike a `dup`, which shares this
    /// one's access mode.
    public func reopenReadOnly() throws(SystemError) -> UnixFileDescriptor {
        try withRawValue { (fd) throws(SystemError) in try UnixFileDescriptor.open("/proc/self/fd/\(fd)", O_RDONLY) }
    }
}
