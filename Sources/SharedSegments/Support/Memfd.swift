import ShmBusSystem

/// The segment format's use of memfds: which seals a segment and a doorbell carry, and
/// the checks a reader makes before it maps a descriptor it was given. The calls
/// themselves are ShmBusSystem's (`UnixFileDescriptor.memfd(name:)` and friends).
public enum Memfd {
    /// The four seals that make a segment safe to share: nobody can shrink or grow it
    /// (no SIGBUS in readers), nobody can map it writable again, and the seals are final.
    public static var segmentSeals: Int32 { segmentSealSet.rawValue }

    /// The seals of a doorbell: fixed size and final, but writable by readers.
    public static var doorbellSeals: Int32 { doorbellSealSet.rawValue }

    /// The seals of a reader's lease page: as a doorbell's (its reader writes it, its
    /// writer maps it read-only and must not be made to fault on a shrunk file).
    public static var leaseSeals: Int32 { doorbellSealSet.rawValue }

    static let segmentSealSet: FileSeals = [.shrink, .grow, .futureWrite, .seal]
    static let doorbellSealSet: FileSeals = [.shrink, .grow, .seal]

    /// A new memfd of `size` bytes that can be sealed (`memfd_create(name,
    /// MFD_CLOEXEC | MFD_ALLOW_SEALING)`, then `ftruncate(size)`).
    public static func create(name: String, size: Int) throws(SegmentError) -> UnixFileDescriptor {
        do throws(SystemError) {
            let fd = try UnixFileDescriptor.memfd(name: name)
            try fd.truncate(to: size)
            return fd
        } catch {
            throw SegmentError(error)
        }
    }

    /// Adds `seals` (`fcntl(F_ADD_SEALS)`).
    public static func addSeals(_ seals: Int32, to fd: UnixFileDescriptor) throws(SegmentError) {
        do throws(SystemError) {
            try fd.addSeals(FileSeals(rawValue: seals))
        } catch {
            throw SegmentError(error)
        }
    }

    /// The seals of `fd` (`fcntl(F_GET_SEALS)`); nil when the file does not support
    /// sealing.
    public static func seals(of fd: UnixFileDescriptor) -> Int32? {
        (try? fd.seals())?.rawValue
    }

    /// Whether `fd` is a memfd.
    public static func isMemfd(_ fd: UnixFileDescriptor) -> Bool { fd.isMemfd }

    /// The size of the file (`fstat`).
    public static func size(of fd: UnixFileDescriptor) throws(SegmentError) -> Int {
        do throws(SystemError) { return try fd.size() } catch { throw SegmentError(error) }
    }

    /// Names of the seals in `required` missing from `present`.
    public static func missingSeals(_ present: Int32, required: Int32) -> [String] {
        FileSeals(rawValue: required).subtracting(FileSeals(rawValue: present)).names
    }

    /// Checks that `fd` is a memfd carrying `required` seals, or throws naming what is
    /// missing.
    public static func checkSealed(_ fd: UnixFileDescriptor, required: Int32) throws(SegmentError) {
        guard fd.isMemfd else {
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

    /// A read-only descriptor for the same memfd (`open("/proc/self/fd/N", O_RDONLY)`),
    /// a new open file description that cannot be used to write.
    public static func reopenReadOnly(_ fd: UnixFileDescriptor) throws(SegmentError) -> UnixFileDescriptor {
        do throws(SystemError) { return try fd.reopenReadOnly() } catch { throw SegmentError(error) }
    }
}
