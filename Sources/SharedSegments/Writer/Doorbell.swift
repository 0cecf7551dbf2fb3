import CShmBusLinux
import Glibc
import Locking
import ShmBusSystem

/// A writer's doorbell: a one-page memfd holding a futex word and a count of waiting
/// readers, so readers can sleep without the bus and the writer pays for a wake-up
/// only when someone sleeps.
///
/// Readers map segments read-only and so cannot flag themselves inside one; the
/// doorbell is the one shared page they may write. It is sealed against resizing but
/// not against writes, so anyone holding it can disturb it: a reader treats its
/// contents as hints, bounds every wait, and backs off when waits keep ending with
/// nothing new (``WakePacing``, docs/FORMAT.md, "Doorbell").
public final class Doorbell: Sendable {
    /// The doorbell memfd, passed to readers next to the segment's.
    public let fileDescriptor: UnixFileDescriptor
    let mapping: MemoryMapping
    /// The reader side's pacing (unused by the writer).
    private let pacing = Lock(WakePacing())

    private init(fileDescriptor: UnixFileDescriptor, mapping: MemoryMapping) {
        self.fileDescriptor = fileDescriptor
        self.mapping = mapping
    }

    /// Creates a doorbell (writer side).
    public static func create() throws(SegmentError) -> Doorbell {
        let L = SegmentLayout.self
        let fd = try Memfd.create(name: "shmbus-doorbell", size: L.doorbellSize)
        let mapping = try MemoryMapping(fd: fd, length: L.doorbellSize, writable: true)
        mapping.store(L.doorbellMagic, at: L.doorbellMagicOffset)
        try Memfd.addSeals(Memfd.doorbellSeals, to: fd)
        return Doorbell(fileDescriptor: fd, mapping: mapping)
    }

    /// Opens a doorbell received from a writer (reader side): a memfd sealed against
    /// resizing (so mapping it never risks SIGBUS), one page at least. Its contents are
    /// not checked, the magic included: any reader may have overwritten them, and the
    /// registry checks every doorbell a segment is registered with, so a magic a
    /// reader overwrote would make the writer's next generation unregistrable. The
    /// doorbell keeps a reference to `fd` (shared ownership, no duplicate): whoever
    /// holds it may go on using it.
    public static func open(_ fd: UnixFileDescriptor) throws(SegmentError) -> Doorbell {
        let L = SegmentLayout.self
        try Memfd.checkSealed(fd, required: FileSeals([.shrink, .grow]).rawValue)
        let size = try Memfd.size(of: fd)
        guard size >= L.doorbellSize else {
            throw SegmentError(.badDoorbell, "doorbell is \(size) bytes, not \(L.doorbellSize)")
        }
        let mapping = try MemoryMapping(fd: fd, length: L.doorbellSize, writable: true)
        return Doorbell(fileDescriptor: fd, mapping: mapping)
    }

    private var word: UnsafeMutablePointer<UInt32> {
        mapping.base.advanced(by: SegmentLayout.doorbellWordOffset).assumingMemoryBound(to: UInt32.self)
    }

    private var waiters: UnsafeMutablePointer<UInt32> {
        mapping.base.advanced(by: SegmentLayout.doorbellWaitersOffset).assumingMemoryBound(to: UInt32.self)
    }

    /// Writer, after a commit: a full fence (ordering the commit before the waiter
    /// check), then, only if a reader waits, bump the word and `FUTEX_WAKE` everyone.
    @inline(__always)
    public func ring() {
        shmbus_fence_seq_cst()
        guard shmbus_load_acquire_u32(waiters) != 0 else { return }
        _ = shmbus_fetch_add_u32(word, 1)
        _ = try? Futex.wake(word)
    }

    /// Reader: sleeps until rung, `timeout` passes, or `ready()` is already true; or,
    /// when earlier waits kept ending with nothing new, sleeps a back-off instead of
    /// waiting on the futex (``WakePacing``). Registers as a waiter, fences, reads the
    /// word, checks `ready()` once more (a commit between the caller's last look and
    /// now is not missed), then `FUTEX_WAIT`s on the word; afterwards looks at
    /// `ready()` to tell a wake-up that brought something from one that did not.
    ///
    /// - Returns: whether it slept on the futex and was woken (false: ready, timed out,
    ///   interrupted, or backed off).
    @discardableResult
    public func wait(timeout: Duration, until ready: () -> Bool) -> Bool {
        switch pacing.withLock({ $0.plan(step: timeout) }) {
        case .sleep(let pause):
            Self.sleep(pause)
            pacing.withLock { $0.slept() }
            return false
        case .wait(let step):
            _ = shmbus_fetch_add_u32(waiters, 1)
            defer { _ = shmbus_fetch_sub_u32(waiters, 1) }
            shmbus_fence_seq_cst()
            let seen = shmbus_load_acquire_u32(word)
            if ready() { return false }
            // A failed wait (a bad address or argument, which cannot happen here) counts
            // as one that ended early: the pacing then keeps it from spinning.
            let result = (try? Futex.wait(on: word, expecting: seen, timeout: step)) ?? .interrupted
            let progressed = ready()
            pacing.withLock { $0.waited(result, progressed: progressed) }
            return result == .woken
        }
    }

    /// The reader's pacing now (for tests and monitoring).
    public var readerPacing: WakePacing { pacing.withLock { $0 } }

    /// `nanosleep`, resumed after signals.
    static func sleep(_ duration: Duration) {
        var request = duration.timespec
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
