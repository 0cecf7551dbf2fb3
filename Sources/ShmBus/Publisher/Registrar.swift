import DBus
import Locking
import Logging
import SharedSegments
import ShmBusPolicy
import Synchronization

/// What the registrar needs of the registry, so that its rules can be tested
/// without a bus (RegistrarTests); ``RegistryClient`` is the real one.
protocol RegistrarRegistry: Sendable {
    /// `RegisterSegment`.
    func registerSegment(channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions) async throws(ShmBusError)
    /// The channel's current segment and its owner, from the channel's object; nil
    /// when the registry has no such channel.
    func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)?
}

extension RegistryClient: RegistrarRegistry {
    func registerSegment(channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions) async throws(ShmBusError) {
        _ = try await registerSegment(channel: channel, fd: fd, options: options) as (segment: String, path: ObjectPath)
    }

    func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)? {
        try await self.channel(channel).map { ($0.currentSegment, $0.owner) }
    }
}

/// Registers a publisher's segments with the registry, in the order the generations
/// were made, and announces what each new generation holds once it is registered.
///
/// Rotations (garbage collections) happen inside `publish`, under the writer's lock,
/// and must not wait for the bus: they are queued here and carried out by one task,
/// one after the other. While any is queued, commits are not announced one by one (a
/// subscriber told of a generation the registry does not have yet could not open
/// it); the registrar announces each generation whole once it is registered. After a
/// registry restart it registers the current segment again.
final class Registrar: Sendable {
    /// What a registration sends besides the segment: fixed for a publisher.
    struct Settings: Sendable {
        var channel: String
        var persistent: Bool
        var ttl: Duration?
        var readers: ReadPolicy
        /// This publisher's unique bus name, to recognise its own segments.
        var me: String
    }

    /// A new generation to register, as Sendable facts (the writer objects stay behind
    /// the mutex).
    struct Rotation: Sendable {
        var new: UnixFileDescriptor
        var newName: String
        var newGeneration: UInt64
        var old: SegmentID

        init(_ rotation: ChannelWriter.Rotation) {
            // Shared, not duplicated: libdbus sends a duplicate of its own.
            new = rotation.new.fileDescriptor
            newName = rotation.new.id.name
            newGeneration = rotation.new.header.generation
            old = rotation.old.id
        }
    }

    private enum Job: Sendable {
        /// Register a new generation and retire the old one.
        case rotation(Rotation)
        /// A registry (re)appeared on the bus: register the current segment there.
        case registryAppeared
    }

    private struct State {
        /// The segment of ours that the running registry has as the channel's current
        /// one; empty after the registry went away.
        var registered = ""
        /// Rotations queued and not yet registered *and announced*: `flush` waits
        /// until this is zero. Lowered, and the waiters drained, in one lock section.
        var unsettled = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// After ``Registrar/stop()``: nothing is queued any more, and nothing waits.
        var stopped = false
    }

    private let settings: Settings
    private let registry: any RegistrarRegistry
    private let writer: Lock<ChannelWriter>
    private let announce: @Sendable (CommittedRange) -> Void
    private let logger: Logger
    private let state = Lock(State())
    /// Rotations queued, not yet registered. Read on every publish, so an atomic.
    private let pending = Atomic<Int>(0)
    private let jobs: AsyncStream<Job>.Continuation
    private let stream: AsyncStream<Job>
    private let task = Lock<Task<Void, Never>?>(nil)

    /// `announce` is called with the whole range of each generation once it is
    /// registered (the publisher hands it to its notifier).
    init(
        settings: Settings, registry: any RegistrarRegistry, writer: Lock<ChannelWriter>, logger: Logger,
        announce: @escaping @Sendable (CommittedRange) -> Void
    ) {
        self.settings = settings
        self.registry = registry
        self.writer = writer
        self.announce = announce
        self.logger = logger
        (stream, jobs) = AsyncStream.makeStream(of: Job.self)
    }

    /// Starts carrying out jobs, one after the other. The task holds the registrar
    /// weakly, so a publisher dropped without `close()` ends it.
    func start() {
        let stream = self.stream
        let started = Task { [weak self] in
            for await job in stream {
                guard let self else { return }
                switch job {
                case .rotation(let rotation): await self.register(rotation)
                case .registryAppeared: await self.registerAfterRestart()
                }
            }
        }
        task.withLock { $0 = started }
    }

    deinit {
        stop()
    }

    /// Stops taking jobs. Those queued are dropped and settled: a `flush` waiting for
    /// them, or made later, returns at once, and commits are announced one by one
    /// again (to a connection that is closing).
    func stop() {
        jobs.finish()
        task.withLock { $0?.cancel() }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stopped = true
            state.unsettled = 0
            pending.store(0, ordering: .sequentiallyConsistent)
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Whether a rotation waits for its registration: then commits are not announced
    /// one by one.
    var isRotationPending: Bool { pending.load(ordering: .sequentiallyConsistent) > 0 }

    /// The segment the running registry has as ours, empty when none.
    var registered: String { state.withLock { $0.registered } }

    /// Queues a rotation. Called with the writer locked, right where the rotation
    /// happened, so that no commit into the new generation can see no rotation pending
    /// and announce it before it is registered.
    ///
    /// Returns false when the registrar has stopped: then nothing was queued, and the
    /// caller (who holds the writer) retires the old segment itself.
    @discardableResult
    func enqueue(_ rotation: ChannelWriter.Rotation) -> Bool {
        let job = Rotation(rotation)
        // Counted in the same section that checks `stopped`, so that `stop()` cannot
        // come in between and leave a count nothing will lower.
        let queued = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.unsettled += 1
            pending.add(1, ordering: .sequentiallyConsistent)
            return true
        }
        if queued { jobs.yield(.rotation(job)) }
        return queued
    }

    /// The registry (re)appeared (`owner` non-nil) or left: a new one knows none of
    /// our segments.
    func registryChanged(owner: String?) {
        state.withLock { $0.registered = "" }
        if owner != nil { jobs.yield(.registryAppeared) }
    }

    /// Waits until every generation queued so far is registered and announced.
    func flush() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.unsettled == 0 || state.stopped { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: Registering

    /// Registers the current segment (with its doorbell) when the publisher opens: the
    /// channel's first, or the successor of a departed publisher's current one.
    /// `previous` is the segment of a departed publisher that this one continues.
    func registerFirst(replacing previous: String? = nil) async throws(ShmBusError) {
        let (segment, name) = currentSegmentDescriptor()
        try await register(segment, replacing: previous)
        state.withLock { $0.registered = name }
    }

    /// The current segment's descriptor (shared with the writer; the message takes a
    /// duplicate of its own) and name, read together.
    private func currentSegmentDescriptor() -> (UnixFileDescriptor, String) {
        writer.withLock { ($0.current.fileDescriptor, $0.current.id.name) }
    }

    /// The same for the oldest segment a rotation has not retired yet (the current one
    /// when none waits).
    private func oldestLiveSegmentDescriptor() -> (UnixFileDescriptor, String) {
        writer.withLock { writer in
            let oldest = writer.liveSegments.min { $0.header.generation < $1.header.generation } ?? writer.current
            return (oldest.fileDescriptor, oldest.id.name)
        }
    }

    private func register(_ segment: UnixFileDescriptor, replacing old: String?) async throws(ShmBusError) {
        let doorbell = writer.withLock { $0.doorbell.fileDescriptor }
        let options = Registry1.RegisterOptions(
            persistent: settings.persistent ? true : nil,
            ttl: settings.persistent ? settings.ttl.map { UInt64(max(0, $0.components.seconds)) } : nil,
            replaces: old, doorbell: doorbell, readers: settings.readers.wire)
        try await registry.registerSegment(channel: settings.channel, fd: segment, options: options)
    }

    private func register(_ job: Rotation) async {
        do {
            try await registerAsCurrent(job.new, name: job.newName)
        } catch where error.code == .registryUnavailable {
            // It gets the current segment when it is back; readers of the old
            // generation then move there and report what they missed.
            logger.debug("registry down; generation not registered", metadata: ["segment": "\(job.newName)"])
        } catch {
            logger.warning(
                "cannot register the new generation; retiring the old one anyway",
                metadata: ["segment": "\(job.newName)", "error": "\(error)"])
        }
        writer.withLock { _ = $0.retire(segment: job.old) }
        // When this was the last rotation pending, publishers announce their own commits
        // again from here on.
        // (Unless `stop()` has settled every count already.)
        state.withLock { state in
            if !state.stopped { pending.subtract(1, ordering: .sequentiallyConsistent) }
        }
        // Announce everything the generation just registered holds: nobody announced the
        // commits made into it while it waited. The range is read after the decrement,
        // so it covers every commit that saw a rotation pending; if a later generation
        // has replaced it meanwhile, this one is complete, and the later one's job
        // announces the later one.
        if let range = writer.withLock({ Self.wholeRange(ofGeneration: job.newGeneration, in: $0) }) {
            announce(range)
        }
        // Only now, registered and announced, does the rotation stop holding up `flush`.
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.stopped else { return [] }
            state.unsettled -= 1
            guard state.unsettled == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Registers `segment` as the channel's current one, replacing the segment of ours
    /// the registry has as current. When the registry restarted since we last looked
    /// (it knows nothing of the segment we would replace, or already has a newer one of
    /// ours), asks it what it has and tries once more.
    private func registerAsCurrent(_ segment: UnixFileDescriptor, name: String) async throws(ShmBusError) {
        // A writer that reuses memory may have given this generation's memory to a later
        // one by now (it retires at once: Publisher.queue); what would be registered is
        // then that one, under its own name, before its turn. Skipped instead: readers
        // find it in memory they mapped, or through Publisher1.OpenSegment.
        guard writer.withLock({ $0.beginRegistration(of: name) }) else {
            logger.debug("generation not registered: its memory carries a later one", metadata: ["segment": "\(name)"])
            return
        }
        defer { writer.withLock { $0.endRegistration(of: name) } }
        let known = registered
        do {
            try await register(segment, replacing: known.isEmpty ? nil : known)
        } catch where [.notFound, .channelBusy, .invalidArgument].contains(error.code) {
            let listed = try await registry.currentSegment(of: settings.channel)
            let current = listed.flatMap { $0.owner == settings.me ? $0.segment : nil } ?? ""
            // (A call that got no answer from a dying registry may still have been
            // carried out by the one D-Bus activated in its place.)
            if current != name { try await register(segment, replacing: current.isEmpty ? nil : current) }
        }
        state.withLock { $0.registered = name }
    }

    /// After a registry (re)appeared: registers the oldest segment of ours that is not
    /// retired, unless the registry has it already. While rotations wait in the queue
    /// that is the segment the first of them replaces, so they go on registering each
    /// generation in order: registering the newest at once (as this did before) left
    /// the queued ones older than what the registry had, refused, and the generations
    /// between never registered, which readers crossing them then saw as a gap.
    /// Without rotations waiting it is the current segment.
    private func registerAfterRestart() async {
        do {
            let (segment, name) = oldestLiveSegmentDescriptor()
            let listed = try await registry.currentSegment(of: settings.channel)
            if listed?.segment == name, listed?.owner == settings.me {
                state.withLock { $0.registered = name }
            } else {
                try await registerAsCurrent(segment, name: name)
            }
        } catch {
            logger.warning("re-registration failed", metadata: ["error": "\(error)"])
        }
    }

    /// The range of every record in the writer's segment of `generation` (the current
    /// one, or one not retired yet), copied chunks included; nil when it is empty or gone.
    static func wholeRange(ofGeneration generation: UInt64, in writer: ChannelWriter) -> CommittedRange? {
        guard let segment = writer.liveSegments.first(where: { $0.header.generation == generation }) else { return nil }
        guard let first = segment.firstSequence else { return nil }
        return CommittedRange(
            segment: segment.id.name, generation: generation, startOffset: UInt64(SegmentLayout.headerSize),
            endOffset: segment.committedEnd, firstSequence: first, lastSequence: segment.lastSequence)
    }
}
