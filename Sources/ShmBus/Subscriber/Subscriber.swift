import DBus
import Foundation
import Logging
import SharedSegments
import Locking

/// Reads a channel: every chunk its publisher commits, in order, as zero-copy views.
///
/// ```swift
/// let subscriber = try await Subscriber.open(channel: "camera/0", options: .init(start: .oldest))
/// for try await event in subscriber {
///     switch event {
///     case .chunk(let chunk): chunk.withUnsafeBytes { show($0) }
///     case .gap(let missed, _): print("fell behind: \(missed) chunks lost")
///     }
/// }
/// ```
///
/// The subscriber maps the channel's segment read-only (through the registry's
/// `OpenSegment`) and reads its log directly; the bus only wakes it. It ignores
/// `Committed` signals from anyone but the channel's registered owner, validates every
/// record it reads, follows garbage collection to the next generation, and reports
/// chunks it can no longer get as a ``Event/gap(missed:after:)`` with their exact
/// count. Cancelling the iterating task ends the iteration; ``cancel()`` ends the
/// subscription and removes its match rules.
public final class Subscriber: AsyncSequence, Sendable {
    public enum Event: Sendable {
        case chunk(Chunk)
        /// `missed` chunks after sequence `after` were collected before this subscriber
        /// reached them.
        case gap(missed: UInt64, after: UInt64)
    }

    /// How the subscriber learns that there is something new.
    public enum Wait: Sendable, Hashable {
        /// `Committed` signals from the publisher (the default).
        case bus
        /// A futex on the publisher's doorbell, without the bus: lowest latency.
        case futex
        /// Look every interval.
        case poll(Duration)
    }

    public struct Options: Sendable {
        public var start: ChannelCursor.Start
        public var wait: Wait
        /// How long ``Subscriber/open(channel:on:options:logger:)`` waits for a channel
        /// that has no publisher yet.
        public var waitForChannel: Duration

        public init(start: ChannelCursor.Start = .now, wait: Wait = .bus, waitForChannel: Duration = .seconds(10)) {
            self.start = start
            self.wait = wait
            self.waitForChannel = waitForChannel
        }
    }

    /// Counters, for monitoring and tests.
    public struct Statistics: Sendable, Hashable {
        /// `Committed` signals from the channel's owner.
        public var signals: UInt64 = 0
        /// `Committed` signals from other connections, ignored.
        public var ignoredSignals: UInt64 = 0
        /// Segments the subscriber moved to.
        public var segmentsFollowed: UInt64 = 0
    }

    public let channel: String
    public let connection: DBusConnection
    let registry: RegistryClient
    let options: Options
    let logger: Logger
    private let ownsConnection: Bool
    private let reading: Lock<Reading>
    private let status: Lock<Status>
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let tasks = Lock<[Task<Void, Never>]>([])
    private let futexWaiter: FutexWaiter?
    /// The `Committed` match; released with the subscriber.
    private let committedHandler = Lock<DBusSignalHandler?>(nil)
    private let cancelled = Lock(false)

    /// What the reader uses; held while reading and while a blocking wait sleeps.
    struct Reading {
        var cursor: ChannelCursor
        var doorbell: Doorbell?
    }

    /// What the bus side updates (on the connection's loop thread among others); never
    /// held across a wait.
    struct Status {
        var owner: String?
        var statistics = Statistics()
        /// The registry announced a segment for this channel: check whether the
        /// channel moved to an unrelated segment (a new publisher).
        var channelMayHaveMoved = false
    }

    private init(
        channel: String, connection: DBusConnection, ownsConnection: Bool, registry: RegistryClient, options: Options,
        reading: sending Reading, owner: String?, logger: Logger
    ) {
        self.channel = channel
        self.connection = connection
        self.ownsConnection = ownsConnection
        self.registry = registry
        self.options = options
        self.logger = logger
        self.reading = Lock(reading)
        status = Lock(Status(owner: owner))
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        futexWaiter = options.wait == .futex ? FutexWaiter() : nil
    }

    /// Opens `channel` on `bus` with a connection of its own.
    public static func open(
        channel: String, on bus: DBusConnection.Bus = .session, options: Options = Options(),
        logger: Logger = Logger(label: "org.shmbus.subscriber")
    ) async throws -> Subscriber {
        let connection: DBusConnection
        do {
            connection = try await DBusConnection.connect(to: bus, logger: logger)
        } catch {
            throw ShmBusError(.bus, error.message)
        }
        do {
            return try await open(channel: channel, connection: connection, ownsConnection: true, options: options, logger: logger)
        } catch {
            connection.close()
            throw error
        }
    }

    /// Opens `channel` on an existing connection (which ``cancel()`` leaves open).
    public static func open(
        channel: String, connection: DBusConnection, options: Options = Options(),
        logger: Logger = Logger(label: "org.shmbus.subscriber")
    ) async throws -> Subscriber {
        try await open(channel: channel, connection: connection, ownsConnection: false, options: options, logger: logger)
    }

    private static func open(
        channel: String, connection: DBusConnection, ownsConnection: Bool, options: Options, logger: Logger
    ) async throws -> Subscriber {
        if let problem = ChannelName.problem(with: channel) {
            throw ShmBusError(.invalidArgument, "invalid channel name '\(channel)': \(problem)")
        }
        let registry = try RegistryClient(connection: connection)
        // Listen first, then look: nothing committed after this point is missed.
        let committed = Lock<WeakSubscriber?>(nil)
        var handler: DBusSignalHandler?
        let events: AsyncThrowingStream<RegistryClient.Event, any Error>
        do {
            // On the connection's loop thread: check the sender, then wake the reader.
            // A futex subscriber sleeps on the doorbell instead and leaves the signals
            // alone: waking its bus thread for each commit would only compete for the
            // CPU with the reader it is meant to wake.
            if options.wait != .futex {
                handler = try await connection.onSignal(
                    matching: MatchRule(interface: ShmBusProtocol.publisherInterfaceName, member: "Committed",
                        path: ShmBusProtocol.publisherPath).matching(argument: 0, channel)
                ) { message in
                    committed.withLock { $0?.subscriber }?.committed(by: message.sender)
                }
            }
            events = try await registry.events()
        } catch {
            throw ShmBusError.wrapping(error)
        }
        // The current segment can be replaced and dropped between listing and opening
        // it (a fast publisher collecting garbage): then look again.
        var opened: (ChannelInfo, SegmentReader, Doorbell?)?
        while opened == nil {
            let info = try await waitForChannel(channel, registry: registry, events: events, timeout: options.waitForChannel)
            if let (reader, doorbell) = try await openIfRegistered(info.currentSegment, registry: registry) {
                opened = (info, reader, doorbell)
            }
        }
        guard let (info, reader, doorbell) = opened else { throw ShmBusError(.notFound, "no channel '\(channel)'") }
        let cursor: ChannelCursor
        do {
            cursor = try ChannelCursor(segment: reader, start: options.start)
        } catch {
            throw ShmBusError(.badSegment, error.message)
        }
        let subscriber = Subscriber(
            channel: channel, connection: connection, ownsConnection: ownsConnection, registry: registry, options: options,
            reading: Reading(cursor: cursor, doorbell: doorbell), owner: info.owner.isEmpty ? nil : info.owner, logger: logger)
        subscriber.committedHandler.withLock { $0 = handler }
        committed.withLock { $0 = WeakSubscriber(subscriber) }
        subscriber.listen(to: events)
        subscriber.startTicker()
        return subscriber
    }

    /// The channel's entry in the registry, waiting up to `timeout` for it to appear.
    private static func waitForChannel(
        _ channel: String, registry: RegistryClient, events: AsyncThrowingStream<RegistryClient.Event, any Error>,
        timeout: Duration
    ) async throws -> ChannelInfo {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let info = try await registry.channels().first(where: { $0.name == channel }), !info.currentSegment.isEmpty {
                return info
            }
            guard ContinuousClock.now < deadline else {
                throw ShmBusError(.notFound, "no channel '\(channel)' in the registry (waited \(timeout))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Opens a segment and its doorbell through the registry.
    static func openSegment(_ name: String, registry: RegistryClient) async throws -> (SegmentReader, Doorbell?) {
        let (fd, info) = try await registry.openSegment(name)
        let reader: SegmentReader
        do {
            reader = try SegmentReader(fd: fd)
        } catch {
            throw ShmBusError(.badSegment, "segment \(name): \(error.message)")
        }
        var doorbell: Doorbell?
        if case .unixFD(let bell)? = info["doorbell"]?.value, let copy = try? bell.duplicate() {
            doorbell = try? Doorbell.open(copy)
        }
        return (reader, doorbell)
    }

    deinit {
        cancel()
    }

    /// Ends the subscription: iteration ends, match rules are removed, and an own
    /// connection is closed.
    public func cancel() {
        cancelled.withLock { $0 = true }
        wake.finish()
        committedHandler.withLock { $0?.cancel() }
        for task in tasks.withLock({ $0 }) { task.cancel() }
        if ownsConnection { connection.close() }
    }

    public var statistics: Statistics { status.withLock { $0.statistics } }

    /// The last sequence delivered (or passed over).
    public var lastSequence: UInt64? { reading.withLock { $0.cursor.lastSequence } }

    /// How far this subscriber is behind the segment it reads.
    public struct Progress: Sendable, Hashable {
        /// The segment being read.
        public var segment: String
        /// The last sequence committed in it (0 before the first).
        public var committed: UInt64
        /// The last sequence delivered or reported missing; nil before the first.
        public var delivered: UInt64?
        /// The publisher moved on to a successor segment.
        public var segmentRetired: Bool

        /// Chunks committed in this segment and not yet delivered.
        public var backlog: UInt64 { committed - Swift.min(committed, delivered ?? 0) }
    }

    /// The progress read from the shared segment's header (no bus call, so it also
    /// answers after the publisher is gone); nil when the header is invalid.
    public var progress: Progress? {
        reading.withLock { state in
            guard let live = try? state.cursor.segment.liveState() else { return nil }
            // The writer stores the committed end first and the header's last sequence
            // after it; one killed in between leaves the header a chunk behind what
            // readers can read. What was delivered from this segment was committed.
            let delivered = state.cursor.lastSequence
            return Progress(
                segment: state.cursor.segment.name, committed: Swift.max(live.lastSequence, delivered ?? 0), delivered: delivered,
                segmentRetired: live.isRetired)
        }
    }

    // MARK: Wake-ups

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        tasks.withLock { $0.append(task) }
    }

    /// A `Committed` signal arrived (on the connection's loop thread). Only the
    /// channel's registered owner may announce commits; anything else is counted and
    /// ignored.
    private func committed(by sender: String?) {
        let genuine = status.withLock { state -> Bool in
            guard let owner = state.owner, sender == owner else {
                state.statistics.ignoredSignals += 1
                return false
            }
            state.statistics.signals += 1
            return true
        }
        if genuine { wake.yield() }
    }

    private func listen(to events: AsyncThrowingStream<RegistryClient.Event, any Error>) {
        spawn { [weak self] in
            do {
                for try await event in events {
                    guard let self else { return }
                    switch event {
                    case .segmentAdded(_, let channel, _, _) where channel == self.channel:
                        await self.refreshOwner()
                        self.status.withLock { $0.channelMayHaveMoved = true }
                        self.wake.yield()
                    case .segmentReplaced(_, _, let channel, _) where channel == self.channel:
                        self.wake.yield()
                    case .registryStarted:
                        await self.refreshOwner()
                        self.wake.yield()
                    default:
                        continue
                    }
                }
            } catch {}
        }
    }

    private func refreshOwner() async {
        guard let info = try? await registry.channels().first(where: { $0.name == channel }) else { return }
        status.withLock { $0.owner = info.owner.isEmpty ? nil : info.owner }
    }

    /// A periodic look, so that a lost or never-sent signal delays, never stalls.
    private func startTicker() {
        let interval: Duration
        if case .poll(let every) = options.wait { interval = every } else { interval = .milliseconds(500) }
        spawn { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.wake.yield()
            }
        }
    }

    // MARK: Reading

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscriber: Subscriber
        var wakeups: AsyncStream<Void>.AsyncIterator
        /// Events read ahead under one lock, handed out one by one.
        var batch: [Event] = []
        var batchIndex = 0

        /// Runs on the caller's executor (SE-0421): a chunk that is already committed
        /// costs no executor hop.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> Event? {
            if batchIndex < batch.count {
                defer { batchIndex += 1 }
                return batch[batchIndex]
            }
            return try await nextEvent()
        }

        public mutating func next() async throws -> Event? {
            if batchIndex < batch.count {
                defer { batchIndex += 1 }
                return batch[batchIndex]
            }
            return try await nextEvent()
        }

        private mutating func nextEvent(isolation actor: isolated (any Actor)? = #isolation) async throws -> Event? {
            while !Task.isCancelled {
                switch try subscriber.read(upTo: 256) {
                case .events(let events):
                    batch = events
                    batchIndex = 1
                    return events[0]
                case .retired(let successor):
                    try await subscriber.follow(successor)
                case .nothing:
                    if try await subscriber.moveIfChannelMoved() { continue }
                    guard try await waitForData() else { return nil }
                }
            }
            return nil
        }

        /// Waits for a wake-up; false when the subscription ended.
        private mutating func waitForData(isolation actor: isolated (any Actor)? = #isolation) async throws -> Bool {
            if let waiter = subscriber.futexWaiter {
                let subscriber = self.subscriber
                await waiter.run { subscriber.waitOnDoorbell(timeout: .milliseconds(500)) }
                return !Task.isCancelled
            }
            return await wakeups.next(isolation: actor) != nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(subscriber: self, wakeups: wakeups.makeAsyncIterator())
    }

    /// The chunks only, gaps dropped.
    public var chunks: AsyncCompactMapSequence<Subscriber, Chunk> {
        compactMap { event in
            if case .chunk(let chunk) = event { return chunk }
            return nil
        }
    }

    enum ReadResult {
        case events([Event])
        case retired(SegmentID)
        case nothing
    }

    /// Reads up to `limit` events under one lock; `.events` is never empty.
    func read(upTo limit: Int) throws -> ReadResult {
        try reading.withLock { state throws -> ReadResult in
            var events: [Event] = []
            do throws(SegmentError) {
                while events.count < limit {
                    switch try state.cursor.next() {
                    case .chunk(let chunk)?: events.append(.chunk(chunk))
                    case .gap(let missed, let after)?: events.append(.gap(missed: missed, after: after))
                    case .retired(let successor)?: return events.isEmpty ? .retired(successor) : .events(events)
                    case nil: return events.isEmpty ? .nothing : .events(events)
                    }
                }
                return .events(events)
            } catch {
                // Deliver what was read before the bad record; the error comes next time.
                if !events.isEmpty { return .events(events) }
                throw ShmBusError(.badSegment, "channel '\(channel)': \(error.message)")
            }
        }
    }

    /// Moves to the successor of a retired segment, opened through the registry, or
    /// through its publisher (`Publisher1.OpenSegment`) when the registry does not have
    /// it or is away. If neither has it (this subscriber fell two collections behind),
    /// moves to the channel's current segment; the cursor then reports what was lost as
    /// a gap.
    func follow(_ successor: SegmentID) async throws {
        var deadline = ContinuousClock.now + .seconds(10)
        let mine = reading.withLock { $0.cursor.segment.name }
        while true {
            do {
                if let (reader, doorbell) = try await Self.openIfRegistered(successor.name, registry: registry) {
                    move(to: reader, doorbell: doorbell)
                    return
                }
                // Not in the registry: not yet (a restarted registry learns only the
                // publisher's current segment), or not any more. Its writer serves it
                // as long as it is not retired, which saves the chunks a jump to the
                // current segment would skip.
                if let owner = status.withLock({ $0.owner }), case .opened(let reader) = await openFromOwner(owner, successor.name) {
                    move(to: reader, doorbell: nil)
                    return
                }
                let current = try await registry.channels().first { $0.name == channel }?.currentSegment ?? ""
                if !current.isEmpty, current != successor.name, current != mine,
                    let (reader, doorbell) = try await Self.openIfRegistered(current, registry: registry)
                {
                    move(to: reader, doorbell: doorbell)
                    return
                }
            } catch let error as ShmBusError where error.code == .registryUnavailable {
                // The registry is down. The publisher itself serves the segments its
                // readers may still need, so a collection can be followed without it;
                // one that it retired already (this subscriber fell two collections
                // behind) is passed over for its current one, and the cursor reports
                // the chunks in between as a gap, as it does through the registry.
                if let owner = status.withLock({ $0.owner }) {
                    switch await openFromOwner(owner, successor.name) {
                    case .opened(let reader):
                        move(to: reader, doorbell: nil)
                        return
                    case .notServed:
                        // Retired already: only then is a jump (and its gap) warranted.
                        if let current = await ownersCurrentSegment(owner), current != mine,
                            case .opened(let reader) = await openFromOwner(owner, current)
                        {
                            move(to: reader, doorbell: nil)
                            return
                        }
                    case .failed:
                        break
                    }
                }
                // Otherwise the publisher registers its current segment when the
                // registry is back, however long that takes. Only time with a running
                // registry counts towards the deadline.
                deadline = ContinuousClock.now + .seconds(10)
            }
            // Not registered yet: the publisher registers before it retires, but the
            // registry may have restarted in between.
            guard ContinuousClock.now < deadline else {
                throw ShmBusError(.notFound, "segment \(successor.name), the successor of \(mine), is neither in the registry nor served by the channel's publisher")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// What the channel's owner made of `OpenSegment`.
    enum OwnerReply {
        case opened(SegmentReader)
        /// `org.shmbus.Error.NotFound`: it does not serve that segment (retired).
        case notServed
        /// No answer, another error, or a segment that failed the checks.
        case failed
    }

    /// How long a subscriber waits for a publisher's answer: a stopped publisher must
    /// not hold up the fallback to the registry for long.
    static let ownerCallTimeout: Duration = .seconds(2)

    /// Asks `owner`, the channel's owner as the registry last named it, for segment
    /// `name` (`org.shmbus.Publisher1.OpenSegment`). What it sends is checked like a
    /// segment from the registry, and more, since no registry vetted it: the seals and
    /// the header; that it is the segment asked for, of this channel; and that it is of
    /// a later generation than the one being read, so that no owner can lead a
    /// subscriber in circles or back in time. The doorbell stays the one this subscriber
    /// has (one per publisher).
    func openFromOwner(_ owner: String, _ name: String) async -> OwnerReply {
        let reply: [DBusValue]
        do {
            reply = try await connection.call(
                destination: owner, path: ShmBusProtocol.publisherPath, interface: ShmBusProtocol.publisherInterfaceName,
                method: "OpenSegment", [.string(name)], timeout: Self.ownerCallTimeout)
        } catch let error as DBusError where ShmBusError(error).code == .notFound {
            return .notServed
        } catch {
            logger.debug("the channel's owner did not answer OpenSegment", metadata: ["segment": "\(name)", "error": "\(error)"])
            return .failed
        }
        do {
            let fd = try reply.decode(UnixFileDescriptor.self)
            let reader = try SegmentReader(fd: fd)
            let leaving = reading.withLock { $0.cursor.segment.header.generation }
            guard reader.header.name == name, reader.header.channel == channel, reader.header.generation > leaving else {
                logger.warning(
                    "the channel's owner sent a segment that does not follow the one being read",
                    metadata: [
                        "asked": "\(name)", "got": "\(reader.header.name)", "channel": "\(reader.header.channel)",
                        "generation": "\(reader.header.generation)", "leaving": "\(leaving)",
                    ])
                return .failed
            }
            return .opened(reader)
        } catch {
            logger.warning("the channel's owner sent a segment that is not valid", metadata: ["segment": "\(name)", "error": "\(error)"])
            return .failed
        }
    }

    /// `owner`'s `CurrentSegment`, nil when it does not answer.
    func ownersCurrentSegment(_ owner: String) async -> String? {
        let reply = try? await connection.call(
            destination: owner, path: ShmBusProtocol.publisherPath, interface: "org.freedesktop.DBus.Properties", method: "Get",
            [.string(ShmBusProtocol.publisherInterfaceName), .string("CurrentSegment")], timeout: Self.ownerCallTimeout)
        guard case .variant(.string(let name))? = reply?.first, !name.isEmpty else { return nil }
        return name
    }

    /// Opens a segment, or returns nil when the registry does not have it (any more).
    static func openIfRegistered(_ name: String, registry: RegistryClient) async throws -> (SegmentReader, Doorbell?)? {
        do {
            return try await openSegment(name, registry: registry)
        } catch let error as ShmBusError where error.code == .notFound {
            return nil
        }
    }

    /// After the registry announced a segment for this channel: if the channel's
    /// current segment is not the one being read and the one being read is not retired
    /// (its publisher went away and another took over), moves there.
    func moveIfChannelMoved() async throws -> Bool {
        let check = status.withLock { state -> Bool in
            defer { state.channelMayHaveMoved = false }
            return state.channelMayHaveMoved
        }
        guard check else { return false }
        let current: String?
        let opened: (SegmentReader, Doorbell?)?
        do {
            current = try await registry.channels().first(where: { $0.name == channel })?.currentSegment
            guard let current, !current.isEmpty, current != reading.withLock({ $0.cursor.segment.name }) else { return false }
            opened = try await Self.openIfRegistered(current, registry: registry)
        } catch let error as ShmBusError where error.code == .registryUnavailable {
            // Look again once it is back (its start is announced, and the ticker wakes
            // us meanwhile); the segment being read stays readable.
            status.withLock { $0.channelMayHaveMoved = true }
            return false
        }
        guard let (reader, doorbell) = opened else { return false }
        // Read the rest of the old segment before moving (it is final: nobody appends).
        if reading.withLock({ $0.cursor.hasPending() }) {
            status.withLock { $0.channelMayHaveMoved = true }
            return true
        }
        move(to: reader, doorbell: doorbell)
        return true
    }

    /// Sleeps on the publisher's doorbell until something is committed or `timeout`
    /// passes (blocking the calling thread; never a thread of the concurrency pool).
    func waitOnDoorbell(timeout: Duration) {
        reading.withLock { state in
            guard let doorbell = state.doorbell else {
                _ = state.cursor.waitForData(.poll(.milliseconds(1)), timeout: timeout)
                return
            }
            _ = state.cursor.waitForData(.futex(doorbell, timeout: .milliseconds(100)), timeout: timeout)
        }
    }

    /// Reads on the calling thread, calling `body` for each event until it returns
    /// false or the subscription is cancelled.
    ///
    /// For consumers that want the lowest latency on a thread of their own: with
    /// ``Wait/futex``, an event costs one futex wake-up from the publisher and no task
    /// switch. Blocks the calling thread between events, so never call it from a task
    /// of the concurrency pool. With ``Wait/bus`` it looks every millisecond.
    public func readBlocking(_ body: (Event) throws -> Bool) throws {
        while !wakeIsFinished {
            switch try read(upTo: 1) {
            case .events(let events):
                // One at a time, so that stopping loses nothing read ahead.
                if try !body(events[0]) { return }
            case .retired(let successor):
                try blocking { try await self.follow(successor) }
            case .nothing:
                if status.withLock({ $0.channelMayHaveMoved }) {
                    if try blocking({ try await self.moveIfChannelMoved() }) { continue }
                }
                waitOnDoorbell(timeout: .milliseconds(200))
            }
        }
    }

    private var wakeIsFinished: Bool { cancelled.withLock { $0 } }

    /// Runs `operation` as a task and blocks the calling thread until it is done.
    private func blocking<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Lock<Result<T, any Error>?>(nil)
        Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await operation()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        guard let outcome = result.withLock({ $0 }) else { throw CancellationError() }
        return try outcome.get()
    }

    private func move(to reader: SegmentReader, doorbell: Doorbell?) {
        reading.withLock { state in
            let last = state.cursor.lastSequence ?? 0
            let newLast = (try? reader.liveState().lastSequence) ?? 0
            if newLast < last, reader.header.baseSequence < last, let fresh = try? ChannelCursor(segment: reader, start: .oldest) {
                // A new chain (its sequences restarted): read it from its start.
                state.cursor = fresh
            } else {
                state.cursor.move(to: reader)
            }
            if let doorbell { state.doorbell = doorbell }
        }
        status.withLock { $0.statistics.segmentsFollowed += 1 }
    }
}

/// A weak reference for the `Committed` handler: the connection's loop holds the
/// handler, and must not keep the subscriber alive.
final class WeakSubscriber: Sendable {
    weak let subscriber: Subscriber?

    init(_ subscriber: Subscriber) {
        self.subscriber = subscriber
    }
}
