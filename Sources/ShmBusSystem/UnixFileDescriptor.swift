import Glibc
import Synchronization
import SystemPackage

/// An owned Unix file descriptor: closed exactly once, by ``close()`` or when the last
/// reference goes away, unless its number was handed on with ``take()``.
///
/// Ownership is explicit at every crossing, after swift-system's `FileDescriptor` and
/// swift-nio's `NIOFileHandle`:
/// - **take**: ``init(taking:)-(Int32)`` adopts a number nobody else will close;
///   ``take()`` gives the number away, and this object forgets it;
/// - **borrow**: ``rawValue`` and ``withRawValue(_:)`` lend the number for a call,
///   passing the object itself lends it for as long as the callee keeps the reference;
/// - **duplicate**: ``init(duplicating:)`` and ``duplicate()`` make a second descriptor
///   for the same open file, for when two owners really must close independently
///   (another process, a value sent on the bus that the receiver keeps).
///
/// It is a class, not a move-only struct, because D-Bus values (`DBusValue.unixFD`)
/// and the segment types hold it in copyable enums and structs; sharing the reference
/// shares the ownership, so a "copy" never duplicates the descriptor.
///
/// Thread-safe: the number lives in an atomic, so ``close()``, ``take()`` and `deinit`
/// agree on who closes it even when called from different threads.
public final class UnixFileDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The number while this object owns it, -1 after ``close()`` or ``take()``.
    private let number: Atomic<Int32>
    /// The number it was created with, for messages after it was closed.
    private let originalNumber: Int32

    /// Takes ownership of `fd`: this object closes it (`close(2)`).
    public init(taking fd: Int32) {
        number = Atomic(fd)
        originalNumber = fd
    }

    /// Takes ownership of a swift-system descriptor (swift-system's type does not own:
    /// from here on only this object closes it).
    public convenience init(taking fd: FileDescriptor) {
        self.init(taking: fd.rawValue)
    }

    /// Duplicates `fd` (`fcntl(fd, F_DUPFD_CLOEXEC, 0)`); the caller keeps its own.
    ///
    /// Throws the bare `Errno` (kept so that callers matching on it keep compiling);
    /// `dup` fails only for `EBADF`, `EMFILE` and `EINVAL`, so the number says it all.
    public convenience init(duplicating fd: Int32) throws(Errno) {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw Errno(rawValue: errno) }
        self.init(taking: copy)
    }

    /// A second descriptor for the same open file (`fcntl(F_DUPFD_CLOEXEC)`), owned by
    /// the object returned. Only for a real second owner: to lend this descriptor, pass
    /// this object.
    public func duplicate() throws(Errno) -> UnixFileDescriptor {
        try UnixFileDescriptor(duplicating: rawValue)
    }

    /// The descriptor number, borrowed: valid while this object is alive and open; -1
    /// after ``close()`` or ``take()``, so that a late use fails with `EBADF` instead of
    /// reaching whatever file reused the number.
    public var rawValue: Int32 { number.load(ordering: .acquiring) }

    /// Whether this object still owns a descriptor.
    public var isOpen: Bool { rawValue >= 0 }

    /// Lends the number to `body`, keeping this object (and so the descriptor) alive
    /// until `body` returns.
    public func withRawValue<Result, Failure: Error>(_ body: (Int32) throws(Failure) -> Result) throws(Failure) -> Result {
        try withExtendedLifetime(self) { () throws(Failure) -> Result in try body(rawValue) }
    }

    /// The descriptor as a swift-system value, borrowed like ``rawValue``: do not close
    /// it; it stays owned by this object.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: rawValue) }

    /// Gives the number away: the caller now owns it and must close it; this object
    /// will not. Throws `EBADF` if it was already closed or taken.
    ///
    /// Only for an instance nobody else holds: sharing the object shares the
    /// ownership, so a taken number is gone for every holder, and one that borrowed it
    /// a moment before may use it after it was reused.
    public func take() throws(SystemError) -> Int32 {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { throw Self.notOpen(originalNumber, "take") }
        return fd
    }

    /// Closes the descriptor now (`close(2)`) instead of when the last reference goes.
    /// Throws `EBADF` if it was already closed or taken, and what `close` reports
    /// otherwise; either way the number is never closed twice (Linux releases it even
    /// when `close` fails, so it is not retried).
    ///
    /// Only for an instance nobody else holds (see ``take()``); a shared one closes
    /// when its last holder lets go. A descriptor decoded from a message belongs to the
    /// message's value and may be shared with it.
    public func close() throws(SystemError) {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { throw Self.notOpen(originalNumber, "close") }
        guard Glibc.close(fd) == 0 else { throw SystemError.current(call: "close", context: "fd \(fd)") }
    }

    deinit {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { Glibc.close(fd) }
    }

    private static func notOpen(_ fd: Int32, _ call: String) -> SystemError {
        SystemError(.badFileDescriptor, call: call, context: "fd \(fd), already closed or taken")
    }

    /// Identity: two objects are equal only if they are the same owner.
    public static func == (lhs: UnixFileDescriptor, rhs: UnixFileDescriptor) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    public var description: String { isOpen ? "fd \(originalNumber)" : "fd \(originalNumber) (closed)" }
}
