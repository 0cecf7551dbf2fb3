import CShmBusLinux
import Glibc
import Locking
import ShmBusSystem

/// A writer's doorbell: a one-page memfd holding a futex word and a flag saying that a
/// reader may be asleep on it, so readers can sleep without the bus and the writer
/// pays for a wake-up only when someone sleeps.
///
/// Readers map segments read-only and so cannot flag themselves inside one; the
/// doorbell is the one shared page they must write (the flag), so it is sealed against
/// resizing but not against writes, and every reader of the channel can write all of
/// it. Nothing in it is trusted by anyone (docs/FORMAT.md, "Doorbell"):
///
/// - a reader treats a wake-up as a hint to look at the segment again, bounds every
///   wait, and backs off when waits keep ending with nothing new (``WakePacing``);
/// - the writer only loads the flag, stores it, and increments the word: no loop and
///   no wait depends on what it reads, and it rations rings that wake nobody
///   (``RingPacing``);
/// - nobody checks the magic after creation (a reader could have overwritten it; the
///   registry checks each doorbell a segment is registered with, and an overwritten
///   magic must not stop the writer's next generation from being registered).
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
    /// not checked: any reader may have written them. The doorbell keeps a reference to
    /// `fd` (shared ownership, no duplicate): whoever holds it may go on using it.
    public static func open(_ fd: UnixFileDescriptor) throws(SegmentError) -> Doorbell {
        let L = SegmentLayout.self
        try Memfd.checkSealed(fd, required: FileSeals([.shrink, .grow]).rawValue)
        let size = try Memfd.size(of: fd)
        guard size >= L.doorbellSize else {
            throw SegmentError(.badDoorbell, "doorbell is \(size) bytes, not \(L.doorbellSize)")
        }
        // Writable: the reader sets the sleeping flag.
        let mapping = try MemoryMapping(fd: fd, length: L.doorbellSize, writable: true)
        return Doorbell(fileDescriptor: fd, mapping: mapping)
    }

    private var word: UnsafeMutablePointer<UInt32> {
        mapping.base.advanced(by: SegmentLayout.doorbellWordOffset).assumingMemoryBound(to: UInt32.self)
    }

    private var sleeping: UnsafeMutablePointer<UInt32> {
        mapping.base.advanced(by: SegmentLayout.doorbellSleepingOffset).assumingMemoryBound(to: UInt32.self)
    }

    // MARK: Writer

    /// Writer, after a commit: unless `pacing` holds back (and `holdingBack` lets it), a
    /// full fence (ordering the commit before the flag's load), then, only if the flag
    /// says a reader may sleep, ``wakeAll()``. Publishing without sleepers costs a fence
    /// and a load.
    @inline(__always)
    public func ring(_ pacing: inout RingPacing, holdingBack: Bool = true) {
        if holdingBack, pacing.holdsBack() { return }
        shmbus_fence_seq_cst()
        guard shmbus_load_acquire_u32(sleeping) != 0 else {
            pacing.settle()
            return
        }
        pacing.rang(woken: wakeAll())
    }

    /// Writer: rings whatever the flag and the pacing say (a segment retired: rare, and
    /// its readers must move on even if a reader cleared the flag).
    public func ringAlways(_ pacing: inout RingPacing) {
        shmbus_fence_seq_cst()
        pacing.rang(woken: wakeAll())
    }

    /// Clears the flag, then bumps the word and wakes every sleeper; returns how many
    /// woke. Clearing first means a reader that sets the flag again after this is rung
    /// for at the next commit; a reader woken here does not clear it itself (so the
    /// writer stops ringing as soon as it has rung once for the sleepers there were).
    private func wakeAll() -> Int {
        shmbus_store_release_u32(sleeping, 0)
        _ = shmbus_fetch_add_u32(word, 1)
        // FUTEX_WAKE fails only for a bad address, and this mapping is the writer's own.
        return (try? Futex.wake(word)) ?? 0
    }

    // MARK: Reader

    /// Reader: sleeps until rung, `timeout` passes, or `ready()` is already true; or,
    /// when earlier waits kept ending with nothing new, sleeps a back-off instead of
    /// waiting on the futex (``WakePacing``). Sets the flag, fences, reads the word,
    /// checks `ready()` once more (a commit between the caller's last look and now is
    /// not missed), then `FUTEX_WAIT`s on the word; afterwards looks at `ready()` to
    /// tell a wake-up that brought something from one that did not.
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
            shmbus_store_release_u32(sleeping, 1)
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
