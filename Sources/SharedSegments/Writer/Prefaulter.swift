import CShmBusLinux
import Glibc
import Locking
import ShmBusSystem
import Synchronization
import SystemPackage

/// Faults segment memory in on a background thread, ahead of the writer.
///
/// The first write to a page of a new memfd costs a page fault: the kernel allocates
/// and zeroes the page and fills the page-table entry, one 4 KiB page at a time. For a
/// 64 MiB payload copied from private memory that was 85% of the publisher's time
/// (docs/BENCHMARKS.md, "Copies"), against a plain `memcpy` into pages already there.
/// A prefaulter does that work before the bytes arrive, on its own thread, so that
/// `publish` copies into memory that is already mapped.
///
/// **Readers never see a byte change because of it.** Both ways of faulting in leave
/// every byte as it was: `MADV_POPULATE_WRITE` faults pages in "as if writing" without
/// writing, and `fallocate` (mode 0, within the file's size) only allocates holes. So a
/// range may safely include committed records, or race with the writer filling a
/// reservation: nothing is ever written through the prefaulter.
///
/// Methods, best first: `MADV_POPULATE_WRITE` (Linux 5.14) fills the writer's page
/// tables too, so the copy then takes no fault at all; where it is refused (`EINVAL`
/// on older kernels), `fallocate` allocates the pages and the writer takes only minor
/// faults; where that is refused too, nothing is done and the writer faults as
/// before. A refusal switches the method for every later job of this prefaulter.
///
/// The thread runs only while there is work: it starts with the first job and ends when
/// the queue is empty, so an idle process has no extra thread. It runs at normal
/// priority (see `startThread`); the work it does is the writer's own page faults,
/// moved earlier, not extra work, except for a window that is never used.
public final class Prefaulter: Sendable {
    /// The process's prefaulter: one thread at most, shared by every writer.
    public static let shared = Prefaulter()

    /// `madvise(MADV_POPULATE_WRITE)` over a range of a mapping; returns 0 or an errno.
    public typealias Populate = @Sendable (_ address: UnsafeMutableRawPointer, _ length: Int) -> Int32
    /// `fallocate` over a range of a memfd; returns 0 or an errno.
    public typealias Allocate = @Sendable (_ fd: UnixFileDescriptor, _ offset: Int, _ length: Int) -> Int32

    /// How the prefaulter faults pages in now.
    public enum Method: Sendable, Equatable {
        case populateWrite
        case allocate
        /// Both were refused: pages are faulted in by the writer, as without a prefaulter.
        case none
    }

    /// Work is done in steps of this many bytes, so that a job for another segment,
    /// queued later, does not wait for a whole large one.
    static let step = 2 << 20

    private let populate: Populate
    private let allocate: Allocate
    private let state = Lock(State())

    private struct State {
        var queue: [Job] = []
        var running = false
        var method: Method = .populateWrite
        var refusals: [SystemError] = []
    }

    private struct Job {
        let mapping: MemoryMapping
        let fd: UnixFileDescriptor
        let progress: PrefaultProgress
    }

    /// A prefaulter using the real calls; tests pass their own to see the fallbacks.
    public init(
        populate: @escaping Populate = { address, length in shmbus_populate_write(address, length) == 0 ? 0 : errno },
        allocate: @escaping Allocate = { fd, offset, length in
            do throws(SystemError) {
                try fd.allocate(offset: offset, length: length)
                return 0
            } catch {
                return error.errno.rawValue
            }
        }
    ) {
        self.populate = populate
        self.allocate = allocate
    }

    /// The method the next step will use.
    public var method: Method { state.withLock { $0.method } }

    /// The calls refused so far (each one changed the method), oldest first.
    public var refused: [SystemError] { state.withLock { $0.refusals } }

    /// Asks for the first `end` bytes of `mapping` (of the memfd `fd`) to be faulted in;
    /// `progress` records how far that got. Returns at once. Asking again for the same
    /// `progress` only moves its target.
    public func prefault(_ mapping: MemoryMapping, fd: UnixFileDescriptor, progress: PrefaultProgress, upTo end: Int) {
        let end = min(mapping.length, (end + SegmentLayout.pageSize - 1) / SegmentLayout.pageSize * SegmentLayout.pageSize)
        let start = state.withLock { state -> Bool in
            guard progress.raiseTarget(to: end) else { return false }
            if !state.queue.contains(where: { $0.progress === progress }) {
                state.queue.append(Job(mapping: mapping, fd: fd, progress: progress))
            }
            guard !state.running else { return false }
            state.running = true
            return true
        }
        if start { startThread() }
    }

    private func startThread() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let prefaulter = Unmanaged<Prefaulter>.fromOpaque(argument!).takeRetainedValue()
            // Normal priority, on purpose: a killed process closes its descriptors
            // (its bus connection) only once every thread has run to its exit, and a
            // SCHED_IDLE or nice 19 thread waited up to 2 s for a CPU on a loaded
            // machine (PublisherKillTests), as it would while holding mmap_lock.
            prefaulter.work()
            return nil
        }, box)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            // No thread: the writer faults the pages itself, as without a prefaulter.
            Unmanaged<Prefaulter>.fromOpaque(box).release()
            state.withLock { state in
                for job in state.queue { job.progress.giveUp() }
                state.queue.removeAll()
                state.running = false
            }
        }
    }

    /// The thread's loop: one step of the oldest job at a time, until none is left.
    private func work() {
        while let (job, from, length, method) = nextStep() {
            let result = fault(job, from: from, length: length, method: method)
            state.withLock { state in
                switch result {
                case .done:
                    job.progress.advance(to: from + length)
                case .refused(let error):
                    // Try the same step again the next way (or give up on it: .none).
                    state.refusals.append(error)
                    state.method = method == .populateWrite ? .allocate : .none
                case .failed:
                    // Not a refusal of the method (ENOMEM, say): this segment's writer
                    // faults the rest itself.
                    job.progress.giveUp()
                }
            }
        }
    }

    private func nextStep() -> (Job, Int, Int, Method)? {
        state.withLock { state in
            while let job = state.queue.first {
                let (done, target) = job.progress.range
                if done >= target || state.method == .none {
                    if state.method == .none { job.progress.giveUp() }
                    state.queue.removeFirst()
                    // Later jobs first; this one comes back if its target moves.
                    continue
                }
                let length = min(Self.step, target - done)
                // Round-robin between segments: the step goes to the back.
                state.queue.removeFirst()
                state.queue.append(job)
                return (job, done, length, state.method)
            }
            state.running = false
            return nil
        }
    }

    private enum StepResult {
        case done
        case refused(SystemError)
        case failed
    }

    private func fault(_ job: Job, from: Int, length: Int, method: Method) -> StepResult {
        switch method {
        case .populateWrite:
            let error = populate(job.mapping.base.advanced(by: from), length)
            if error == 0 { return .done }
            // EINVAL: a kernel before 5.14 (or a mapping it will not populate); ENOSYS,
            // EPERM: a sandbox's seccomp filter. Anything else is this range's problem.
            guard [EINVAL, ENOSYS, EPERM].contains(error) else { return .failed }
            return .refused(SystemError(Errno(rawValue: error), call: "madvise(MADV_POPULATE_WRITE)", context: "\(length) bytes at \(from)"))
        case .allocate:
            let error = allocate(job.fd, from, length)
            if error == 0 { return .done }
            guard [EOPNOTSUPP, EINVAL, ENOSYS, EPERM, EBADF].contains(error) else { return .failed }
            return .refused(SystemError(Errno(rawValue: error), call: "fallocate", context: "\(length) bytes at \(from)"))
        case .none:
            return .failed
        }
    }
}

/// How far a segment's memory has been faulted in: shared by its writer, which moves
/// the target, and the prefaulter's thread, which moves the done mark.
public final class PrefaultProgress: Sendable {
    private let done = Atomic<Int>(0)
    private let target = Atomic<Int>(0)
    private let abandoned = Atomic<Bool>(false)

    public init() {}

    /// Bytes from the start of the segment that are faulted in.
    public var preparedBytes: Int { done.load(ordering: .acquiring) }
    /// Bytes from the start of the segment asked for so far.
    public var targetBytes: Int { target.load(ordering: .relaxed) }
    /// The prefaulter gave up on this segment (its writer faults what is left).
    public var gaveUp: Bool { abandoned.load(ordering: .acquiring) }

    var range: (done: Int, target: Int) { (done.load(ordering: .relaxed), target.load(ordering: .relaxed)) }

    /// Raises the target; false when it was there already (or given up).
    func raiseTarget(to end: Int) -> Bool {
        guard !gaveUp, end > target.load(ordering: .relaxed) else { return false }
        target.store(end, ordering: .relaxed)
        return true
    }

    /// Marks the bytes below `end` faulted in (never lowering the mark: the writer's
    /// ``skip(to:)`` and the prefaulter's steps race).
    func advance(to end: Int) {
        var current = done.load(ordering: .relaxed)
        while current < end {
            let (exchanged, original) = done.compareExchange(expected: current, desired: end, ordering: .releasing)
            if exchanged { return }
            current = original
        }
    }

    /// The writer has written everything below `end` (its committed end) itself, so
    /// those pages are faulted in: the prefaulter starts past them. Without this, a
    /// writer that outran its window (one chunk larger than the window, written in
    /// place) had the prefaulter walk every page it had just written, on the other
    /// core while readers mapped the same pages: a 64 MiB chunk written in place reached
    /// its reader in 17 ms instead of 9 (docs/BENCHMARKS.md, "The prefaulter beside
    /// the reader").
    /// Rounded down to a page: the prefaulter's steps start where this mark is, and
    /// `madvise` refuses a start inside a page (EINVAL, which would have switched the
    /// prefaulter to `fallocate` for good).
    public func skip(to end: Int) { advance(to: end / SegmentLayout.pageSize * SegmentLayout.pageSize) }

    func giveUp() {
        abandoned.store(true, ordering: .releasing)
        target.store(done.load(ordering: .relaxed), ordering: .relaxed)
    }
}
