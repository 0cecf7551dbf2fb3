import CShmBusLinux
import Glibc

/// futex(2) on a 32-bit word in shared memory. Not `FUTEX_PRIVATE_FLAG`: waiter and
/// waker may be different processes mapping the same memfd at different addresses.
public enum Futex {
    /// How a ``wait(on:expecting:timeout:)`` ended.
    public enum WaitResult: Sendable, Equatable {
        /// A ``wake(_:count:)`` woke it (or a spurious wake-up: check the word).
        case woken
        /// The word did not hold the expected value when the wait began (`EAGAIN`).
        case valueChanged
        /// The timeout passed (`ETIMEDOUT`).
        case timedOut
        /// A signal interrupted it (`EINTR`).
        case interrupted
    }

    /// `futex(word, FUTEX_WAIT, expected, timeout)`: sleeps while `*word == expected`,
    /// for at most `timeout` (nil: until woken). Throws only for a bad address or
    /// argument (`EFAULT`, `EINVAL`).
    @inlinable
    public static func wait(on word: UnsafePointer<UInt32>, expecting expected: UInt32, timeout: Duration?) throws(SystemError)
        -> WaitResult
    {
        let nanoseconds = timeout?.clampedNanoseconds ?? -1
        if shmbus_futex_wait(word, expected, nanoseconds) == 0 { return .woken }
        switch errno {
        case EAGAIN: return .valueChanged
        case ETIMEDOUT: return .timedOut
        case EINTR: return .interrupted
        default: throw SystemError.current(call: "futex(FUTEX_WAIT)")
        }
    }

    /// `futex(word, FUTEX_WAKE, count)`: wakes at most `count` waiters on `word`, in
    /// any process; returns how many it woke.
    @inlinable
    @discardableResult
    public static func wake(_ word: UnsafePointer<UInt32>, count: Int32 = .max) throws(SystemError) -> Int {
        Int(try systemCall("futex(FUTEX_WAKE)") { shmbus_futex_wake(word, count) })
    }
}
