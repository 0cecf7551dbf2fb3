import CShmBusLinux
import Glibc

/// An `eventfd(2)` counter, non-blocking: a descriptor that `poll` reports readable
/// once ``signal()`` was called, until ``drain()``. One thread wakes another out of
/// `poll` with it (the D-Bus loop's command queue does).
public final class EventCounter: Sendable {
    /// The eventfd, to poll for `POLLIN`.
    public let fileDescriptor: UnixFileDescriptor

    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    public init() throws(SystemError) {
        fileDescriptor = UnixFileDescriptor(taking: try systemCall("eventfd") { shmbus_eventfd() })
    }

    /// `write(2)` of 1: makes the descriptor readable. A counter at its maximum
    /// (`EAGAIN`) is readable already, so a failure changes nothing and is not reported.
    public func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? fileDescriptor.write($0) }
    }

    /// `read(2)` of the counter: resets it to zero; returns the sum of the signals since
    /// the last drain (0 when there were none: `EAGAIN`).
    @discardableResult
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { (try? fileDescriptor.read(into: $0)) ?? 0 }
        return n == 8 ? value : 0
    }
}
