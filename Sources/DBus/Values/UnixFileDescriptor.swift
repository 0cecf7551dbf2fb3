import Glibc
import SystemPackage

/// An owned Unix file descriptor carried in a D-Bus message (type `h`).
///
/// The descriptor is closed when the last reference goes away. Descriptors received
/// from the bus are duplicates made by libdbus for this process, so closing them here
/// never affects the sender.
public final class UnixFileDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The descriptor number; valid while this object is alive.
    public let rawValue: Int32

    /// Takes ownership of `fd`: it is closed when this object is released.
    public init(taking fd: Int32) {
        self.rawValue = fd
    }

    /// Takes ownership of a swift-system descriptor.
    public convenience init(taking fd: FileDescriptor) {
        self.init(taking: fd.rawValue)
    }

    /// Duplicates `fd` (`fcntl(F_DUPFD_CLOEXEC)`); the caller keeps its own.
    public convenience init(duplicating fd: Int32) throws(Errno) {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw Errno(rawValue: errno) }
        self.init(taking: copy)
    }

    /// A new descriptor for the same open file (`fcntl(F_DUPFD_CLOEXEC)`) that the
    /// caller owns and must close.
    public func duplicate() throws(Errno) -> FileDescriptor {
        let copy = fcntl(rawValue, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw Errno(rawValue: errno) }
        return FileDescriptor(rawValue: copy)
    }

    /// The descriptor as a swift-system value; it stays owned by this object.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: rawValue) }

    deinit {
        close(rawValue)
    }

    public static func == (lhs: UnixFileDescriptor, rhs: UnixFileDescriptor) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    public var description: String { "fd \(rawValue)" }
}
