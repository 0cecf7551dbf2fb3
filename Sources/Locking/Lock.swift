import Glibc

/// A value protected by a `pthread_mutex_t`, with the same shape as the standard
/// library's `Synchronization.Mutex`.
///
/// Why not `Mutex`: on Linux it is built on raw futex calls inside the standard
/// library, which ThreadSanitizer does not see, so every access under it is reported
/// as a race and a `--sanitize=thread` run drowns in false positives. TSan intercepts
/// `pthread_mutex_lock`, so with this lock the sanitizer checks what matters: the code
/// that forgets to lock. (swift-nio's `NIOLock` wraps pthreads for the same reason.)
///
/// `@unchecked Sendable` is safe for the same reason it is for `Mutex`: the value is
/// only reachable inside `withLock`, which holds the mutex; it enters through a
/// `sending` parameter and leaves only as a `sending` result, so the compiler still
/// refuses to let a non-`Sendable` value escape to another thread.
public final class Lock<Value>: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Only touched inside withLock, under the mutex: dynamic exclusivity checks would
    // only repeat what the mutex guarantees.
    @usableFromInline @exclusivity(unchecked) var value: Value

    public init(_ value: sending Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value (`pthread_mutex_lock`).
    /// Inlinable, so that callers get a specialized copy rather than a generic call
    /// that looks up type metadata at run time.
    @inlinable
    public func withLock<Result, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
