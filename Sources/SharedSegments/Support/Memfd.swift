import CShmBusLinux
import Glibc
import SystemPackage

/// memfd creation, sealing and inspection (the calls Swift's Glibc module lacks come
/// from the CShmBusLinux shim).
public enum Memfd {
    /// The four seals that make a segment safe to share: nobody can shrink or grow it
    /// (no SIGBUS in readers), nobody can map it writable again, and the seals are final.
    public static var segmentSeals: Int32 {
        shmbus_F_SEAL_SHRINK | shmbus_F_SEAL_GROW | shmbus_F_SEAL_FUTURE_WRITE | shmbus_F_SEAL_SEAL
    }

    /// The seals of a doorbell: fixed size and final, but writable by readers.
    public static var doorbellSeals: Int32 {
        shmbus_F_SEAL_SHRINK | shmbus_F_SEAL_GROW | shmbus_F_SEAL_SEAL
    }

    /// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)` then `ftruncate(size)`.
    public static func create(name: String, size: Int) throws(SegmentError) -> FileDescriptor {
        let fd = shmbus_memfd_create(name, shmbus_MFD_CLOEXEC | shmbus_MFD_ALLOW_SEALING)
        guard fd >= 0 else { throw SegmentError.system("memfd_create", Errno(rawValue: errno)) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw SegmentError.system("ftruncate(\(size))", error)
        }
        return FileDescriptor(rawValue: fd)
    }

    /// `fcntl(F_ADD_SEALS)`.
    public static func addSeals(_ seals: Int32, to fd: FileDescriptor) throws(SegmentError) {
        guard shmbus_add_seals(fd.rawValue, seals) == 0 else {
            throw SegmentError.system("fcntl(F_ADD_SEALS)", Errno(rawValue: errno))
        }
    }

    /// `fcntl(F_GET_SEALS)`; nil when the file does not support sealing.
    public static func seals(of fd: FileDescriptor) -> Int32? {
        let seals = shmbus_get_seals(fd.rawValue)
        return seals < 0 ? nil : seals
    }

    /// Whether `fd` is a memfd: `/proc/self/fd/N` links to `/memfd:NAME (deleted)`.
    public static func isMemfd(_ fd: FileDescriptor) -> Bool {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink("/proc/self/fd/\(fd.rawValue)", &buffer, buffer.count - 1)
        guard n > 0 else { return false }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return target.hasPrefix("/memfd:")
    }

    /// `fstat(fd).st_size`.
    public static func size(of fd: FileDescriptor) throws(SegmentError) -> Int {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else { throw SegmentError.system("fstat", Errno(rawValue: errno)) }
        return Int(info.st_size)
    }

    /// Names of the seals in `required` missing from `present`.
    public static func missingSeals(_ present: Int32, required: Int32) -> [String] {
        let names: [(Int32, String)] = [
            (shmbus_F_SEAL_SHRINK, "F_SEAL_SHRINK"), (shmbus_F_SEAL_GROW, "F_SEAL_GROW"),
            (shmbus_F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"), (shmbus_F_SEAL_SEAL, "F_SEAL_SEAL"),
        ]
        return names.filter { required & $0.0 != 0 && present & $0.0 == 0 }.map(\.1)
    }

    /// Checks that `fd` is a memfd carrying `required` seals, or throws naming what is
    /// missing.
    public static func checkSealed(_ fd: FileDescriptor, required: Int32) throws(SegmentError) {
        guard isMemfd(fd) else {
            throw SegmentError(.notMemfd, "descriptor \(fd.rawValue) is not a memfd (created with memfd_create)")
        }
        guard let seals = seals(of: fd) else {
            throw SegmentError(.notSealed, "memfd \(fd.rawValue) does not support sealing (create it with MFD_ALLOW_SEALING)")
        }
        let missing = missingSeals(seals, required: required)
        guard missing.isEmpty else {
            throw SegmentError(.notSealed, "memfd \(fd.rawValue) lacks \(missing.joined(separator: ", "))")
        }
    }

    /// A read-only descriptor for the same memfd: `open("/proc/self/fd/N", O_RDONLY)`,
    /// a new open file description that cannot be used to write.
    public static func reopenReadOnly(_ fd: FileDescriptor) throws(SegmentError) -> FileDescriptor {
        let copy = open("/proc/self/fd/\(fd.rawValue)", O_RDONLY | O_CLOEXEC)
        guard copy >= 0 else { throw SegmentError.system("open(/proc/self/fd/\(fd.rawValue), O_RDONLY)", Errno(rawValue: errno)) }
        return FileDescriptor(rawValue: copy)
    }
}
