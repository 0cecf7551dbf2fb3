import DequeModule
import Locking

extension DBusConnection {
    /// How a connection runs the handlers of the method calls it receives.
    ///
    /// Every client's calls reach a service in one stream, in the order the bus
    /// forwarded them: started as they arrive, one client pipelining thousands of calls
    /// puts every other client's call behind all of its own. Instead, calls wait in one
    /// queue per sender, and a bounded number of handlers run at once, taken from the
    /// senders in turn (round robin), and a sender that had nothing queued or running
    /// before a turn of the others. A bystander's call then waits for about one other
    /// call to start, plus the handlers already running.
    ///
    /// A handler that waits for a later call of the same sender (say, a `Wait` answered
    /// by a `Signal`) needs `perSender` above the number of such waits it may have.
    public struct CallScheduling: Sendable, Hashable {
        /// Handlers of one sender running at once (1 or more).
        public var perSender: Int
        /// Handlers running at once on the connection (1 or more) for senders with
        /// calls queued or running; a fresh sender's call may take one of `total` more.
        public var total: Int
        /// Unix fds that calls waiting for a handler may hold in all. A call whose
        /// descriptors would pass it is refused at once with ``refusalErrorName`` and its
        /// descriptors closed, so that a flood of descriptors cannot exhaust the
        /// process's RLIMIT_NOFILE.
        public var queuedUnixFDs: Int
        /// The error that refuses such a call: `org.freedesktop.DBus.Error.LimitsExceeded`
        /// unless the service names one of its own.
        public var refusalErrorName = DBusError.limitsExceededName
        /// No new handler starts while more than this many bytes wait for the bus to
        /// read them (replies handed to the loop, libdbus's outgoing queue, the
        /// socket's): the bus reads them more slowly than handlers write them, and
        /// what would queue behind them waits in the per-sender queues instead, where
        /// it is served in turn.
        public var outgoingBytes: Int
        /// Nor while more descriptors than this wait in libdbus's outgoing queue (each
        /// reply carrying one holds a duplicate until it is written).
        public var outgoingUnixFDs: Int

        public init(
            perSender: Int = 16, total: Int = 64, queuedUnixFDs: Int = 1024, outgoingBytes: Int = 64 << 10, outgoingUnixFDs: Int = 1024
        ) {
            self.perSender = max(1, perSender)
            self.total = max(1, total)
            self.queuedUnixFDs = max(0, queuedUnixFDs)
            self.outgoingBytes = max(1, outgoingBytes)
            self.outgoingUnixFDs = max(1, outgoingUnixFDs)
        }
    }
}

/// The per-sender queues and the round robin of ``DBusConnection/CallScheduling``.
///
/// Calls are added by the loop thread; handlers finish on the concurrency pool; the
/// loop reports its outgoing queue. All three take the lock briefly, and every job
/// that may start is started outside it.
final class CallScheduler: Sendable {
    /// A call's handling: it runs the handler and returns the delivery of its answer,
    /// which the scheduler performs once the handler's slot is free again. It is told
    /// whether its sender was idle when the call came (``DBusConnection/ServedCall``).
    typealias Job = @Sendable (_ fromIdleSender: Bool) async -> Delivery
    typealias Delivery = @Sendable () -> Void
    private typealias Startable = (sender: String, job: Job, idle: Bool)

    private struct Waiting {
        let job: Job
        let unixFDs: Int
        let idle: Bool
    }

    private struct State {
        /// Calls not started yet, by sender. A sender's entry goes when it empties, so
        /// that a flood's queue is given back once it is served.
        var queues: [String: Deque<Waiting>] = [:]
        /// Senders with a waiting call and a free slot of their own, in serving order:
        /// those that ran nothing when their call came (`fresh`), and the ring of the
        /// others. A sender is in one of them exactly when its queue is not empty and it
        /// runs fewer than `perSender` handlers.
        var fresh: Deque<String> = []
        var ready: Deque<String> = []
        /// Whether the last call started came from `fresh`: the two alternate, so that
        /// neither light clients nor floods can hold the other off.
        var lastWasFresh = false
        var running: [String: Int] = [:]
        var runningTotal = 0
        var queuedUnixFDs = 0
        /// What the loop last saw waiting for the bus to read (libdbus's queue and the
        /// socket's), and the bytes of replies handed to the loop and not sent yet.
        var reportedBytes = 0
        var reportedUnixFDs = 0
        var pendingReplyBytes = 0

        /// Whether more than `outgoingBytes` or `outgoingUnixFDs` wait for the bus to read.
        func congested(_ limits: DBusConnection.CallScheduling) -> Bool {
            reportedBytes + pendingReplyBytes > limits.outgoingBytes || reportedUnixFDs > limits.outgoingUnixFDs
        }
    }

    let limits: DBusConnection.CallScheduling
    private let state = Lock(State())
    private let observing = Lock<Observer?>(nil)

    /// The observer in a class of its own: a bare closure taken in and out of the
    /// generic `Lock` is wrapped in a reabstraction thunk each way, and those wrappers
    /// piled up (a perf profile of the registry under a flood found 78% of its time in
    /// nested thunks of this closure).
    final class Observer: Sendable {
        let report: @Sendable (DBusConnection.ServedCall) -> Void
        init(_ report: @escaping @Sendable (DBusConnection.ServedCall) -> Void) { self.report = report }
    }

    /// Told of every call a job answered (``DBusConnection/observeServedCalls(_:)``).
    var observer: Observer? {
        get { observing.withLock { $0 } }
        set { observing.withLock { $0 = newValue } }
    }

    init(limits: DBusConnection.CallScheduling) {
        self.limits = limits
    }

    /// Queues a call of `sender` holding `unixFDs` descriptors; false (and nothing
    /// queued) when those would pass ``DBusConnection/CallScheduling/queuedUnixFDs``.
    func submit(sender: String, unixFDs: Int, _ job: @escaping Job) -> Bool {
        let started = state.withLock { state -> [Startable]? in
            if unixFDs > 0, state.queuedUnixFDs + unixFDs > limits.queuedUnixFDs { return nil }
            state.queuedUnixFDs += unixFDs
            let idle = state.queues[sender] == nil && state.running[sender] == nil
            state.queues[sender, default: []].append(Waiting(job: job, unixFDs: unixFDs, idle: idle))
            if state.queues[sender]?.count == 1 {
                // A sender with nothing queued and nothing running (a client asking one
                // thing, a bystander) waits among the fresh ones, served before the
                // ring every other turn; a sender that keeps calls queued or running (a
                // flood) only ever rejoins the ring at its end.
                switch state.running[sender, default: 0] {
                case 0: state.fresh.append(sender)
                case limits.perSender...: break
                default: state.ready.append(sender)
                }
            }
            return takeStartable(&state)
        }
        guard let started else { return false }
        start(started)
        return true
    }

    /// Tells the scheduler how many bytes and descriptors wait to be read by the bus
    /// (loop thread, at each reply and once per turn).
    func outgoing(bytes: Int, unixFDs: Int) {
        let started = state.withLock { state -> [Startable] in
            state.reportedBytes = bytes
            state.reportedUnixFDs = unixFDs
            return takeStartable(&state)
        }
        start(started)
    }

    /// A reply of about `bytes` was handed to the loop (any thread).
    func replyQueued(bytes: Int) {
        state.withLock { $0.pendingReplyBytes += bytes }
    }

    /// The loop sent it (or could not); ``outgoing(bytes:unixFDs:)`` follows.
    func replySent(bytes: Int) {
        state.withLock { $0.pendingReplyBytes -= bytes }
    }

    /// Whether calls wait for the bus to read what was written.
    var isHoldingCalls: Bool { state.withLock { $0.congested(limits) && !$0.queues.isEmpty } }

    /// `sender`'s handler ended; returns the calls that may start now.
    private func finished(_ sender: String) -> [Startable] {
        state.withLock { state in
            let running = state.running[sender, default: 1] - 1
            state.running[sender] = running == 0 ? nil : running
            state.runningTotal -= 1
            // At its limit it had left the ring; it joins it again at the end.
            if running == limits.perSender - 1, state.queues[sender] != nil { state.ready.append(sender) }
            return takeStartable(&state)
        }
    }

    /// Takes the next call of each ready sender in turn while slots are free.
    private func takeStartable(_ state: inout State) -> [Startable] {
        var started: [Startable] = []
        while let sender = next(&state) {
            guard let waiting = state.queues[sender]?.popFirst() else { continue }
            if state.queues[sender]?.isEmpty == true { state.queues[sender] = nil }
            state.queuedUnixFDs -= waiting.unixFDs
            let running = state.running[sender, default: 0] + 1
            state.running[sender] = running
            state.runningTotal += 1
            if state.queues[sender] != nil, running < limits.perSender { state.ready.append(sender) }
            started.append((sender, waiting.job, waiting.idle))
        }
        // A Deque never shrinks by itself; empty ones after a flood give their storage back.
        if state.queues.isEmpty {
            state.ready = []
            state.fresh = []
        }
        return started
    }

    /// The sender whose next call starts now, if any may. The ring waits for a free
    /// slot of `total` and for the bus to catch up; a fresh sender's call (one call,
    /// of a client that had nothing else here) may also take one of `total` more slots
    /// and pass the outgoing limit: it adds one reply to what waits for the bus, and
    /// a bystander's question should not wait for a flood's answers to drain.
    private func next(_ state: inout State) -> String? {
        let ringMay = !state.ready.isEmpty && state.runningTotal < limits.total && !state.congested(limits)
        let freshMay = !state.fresh.isEmpty && state.runningTotal < 2 * limits.total
        guard ringMay || freshMay else { return nil }
        let fromFresh = freshMay && (!state.lastWasFresh || !ringMay)
        state.lastWasFresh = fromFresh
        return fromFresh ? state.fresh.popFirst() : state.ready.popFirst()
    }

    private func start(_ jobs: [Startable]) {
        for job in jobs {
            Task { await self.work(job) }
        }
    }

    /// Runs `job`, then goes on with the next call the scheduler gives it when that one
    /// ends, rather than starting a task for it: a new task waits behind everything the
    /// process's executor has queued, and a busy one (two threads and the hundreds of
    /// tasks of a test suite) kept each waiting about half a second, so that 16 slots
    /// moved 32 calls a second. It yields now and then, so that a flood of calls that
    /// never suspend does not keep an executor thread from the rest of the process.
    private func work(_ first: Startable) async {
        var current: Startable? = first
        var served = 0
        while let (sender, job, idle) = current {
            let deliver = await job(idle)
            served += 1
            // The slot is given back before the caller can have its answer: a client
            // that asks again as soon as it has one (a bystander's `Lookup`, then its
            // `RegisterSegment`) then calls as a sender with nothing running, served
            // among the fresh ones, and not as one still running, whose call would wait
            // in the ring behind every flooding sender.
            var next = finished(sender)
            deliver()
            current = next.isEmpty ? nil : next.removeFirst()
            start(next)
            if current != nil, served % Self.callsBetweenYields == 0 { await Task.yield() }
        }
    }

    private static let callsBetweenYields = 32
}

extension DBusValue {
    /// The descriptors in this value, nested ones included.
    var unixFDCount: Int {
        switch self {
        case .unixFD: 1
        case .variant(let inner): inner.unixFDCount
        case .array(_, let elements), .structure(let elements): elements.reduce(0) { $0 + $1.unixFDCount }
        case .dictionary(_, _, let entries): entries.reduce(0) { $0 + $1.key.unixFDCount + $1.value.unixFDCount }
        default: 0
        }
    }
}

extension ConnectionLoop {
    /// Hands `answer`, the handling of `call`, to the scheduler, which sends its reply;
    /// a call whose descriptors would pass its limit is answered at once with the
    /// scheduling's refusal error (`LimitsExceeded` unless the service chose another),
    /// and its descriptors close with it.
    func schedule(_ call: DBusMessage, _ answer: @escaping @Sendable () async -> Result<[DBusValue], DBusError>) {
        let unixFDs = call.body.reduce(0) { $0 + $1.unixFDCount }
        let core = core
        let (woke, dispatched) = (wokeAt, ContinuousClock.now)
        let job: CallScheduler.Job = { idle in
            let started = ContinuousClock.now
            let result = await answer()
            let answered = ContinuousClock.now
            let served = DBusConnection.ServedCall(
                interface: call.interface, member: call.member ?? "", sender: call.sender ?? "", fromIdleSender: idle,
                inLoop: dispatched - woke, queued: started - dispatched, handling: answered - started, replying: .zero)
            return { ConnectionLoop.sendReplyFromTask(to: call, result, through: core, served: served, answeredAt: answered) }
        }
        guard core.scheduler.submit(sender: call.sender ?? "", unixFDs: unixFDs, job) else {
            let limits = core.scheduler.limits
            return reply(to: call, with: DBusError(
                name: limits.refusalErrorName,
                message: "too many descriptors wait in calls to this connection (limit \(limits.queuedUnixFDs)); retry later"))
        }
    }
}
