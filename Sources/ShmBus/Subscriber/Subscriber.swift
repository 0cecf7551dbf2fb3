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
///     case .publisherLeft(let owner): print("\(owner) left; waiting for the next publisher")
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
        /// The channel's publisher left the bus (it exited, crashed or closed), after
        /// every chunk it committed was delivered; `owner` is its unique name, empty
        /// when the channel had no publisher when the subscription began (its
        /// persistent segments outlived it). Iteration goes on, and continues with the
        /// next publisher of the channel, unless ``Options/endWhenPublisherLeaves`` is
        /// set.
        case publisherLeft(owner: String)
    }

    /// Where a subscription starts.
    public typealias Start = ChannelCursor.Start

    public struct Options: Sendable {
        public var start: Start
        public var wait: Wait
        /// How long ``Subscriber/open(channel:on:options:logger:)`` waits for a channel
        /// that has no publisher yet.
        public var waitForChannel: Duration
        /// End the iteration after ``Event/publisherLeft(owner:)`` instead of waiting
        /// for the channel's next publisher.
        public var endWhenPublisherLeaves: Bool

        public init(
            start: Start = .now, wait: Wait = .bus, waitForChannel: Duration = .seconds(10), endWhenPublisherLeaves: Bool = false
        ) {
            self.start = start
            self.wait = wait
            self.waitForChannel = waitForChannel
            self.endWhenPublisherLeaves = endWhenPublisherLeaves
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
        /// Successors that could not be followed because their publisher left the bus
        /// and took them along (it was not persistent, and died after a collection).
        /// Their chunks are lost, and cannot be counted: nobody holds them any more.
        public var successorsLost: UInt64 = 0
        /// ``Wait/spin(_:)``: spins that ended with something to read.
        public var spinsFound: UInt64 = 0
        /// ``Wait/spin(_:)``: spins that ran out their budget, after which the
        /// subscriber slept on the doorbell.
        public var spinsRanOut: UInt64 = 0
        /// ``Wait/spin(_:)``: waits that slept on the doorbell at once because the
        /// last spin had run out too recently (``SpinPacing``).
        public var spinsNotAllowed: UInt64 = 0
    }

    public let channel: String
    public let connection: DBusConnection
    let locator: SegmentLocator
    let options: Options
    let logger: Logger
    private let ownsConnection: Bool
    let reading: Lock<Reading>
    let status: Lock<Status>
    let wakeups: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation
    let tasks = Lock<[Task<Void, Never>]>([])
    let futexWaiter: FutexWaiter?
    let metrics: SubscriberMetrics
    /// The `Committed` match; released with the subscriber.
    let committedHandler = Lock<DBusSignalHandler?>(nil)
    private let cancelled = Lock(false)

    /// What the reader uses; held while reading and while a blocking wait sleeps.
    struct Reading {
        var cursor: ChannelCursor
        var doorbell: Doorbell?
        /// ``Wait/spin(_:)`` only.
        var spinPacing: SpinPacing?
        /// Segments this subscriber read and moved on from, the latest last (at most
        /// ``passedSegmentsKept``): a registry that names one of them as the channel's
        /// current segment is behind, not ahead (Subscriber+Segments.swift).
        var passed: [String] = []
    }

    static let passedSegmentsKept = 64

    /// What the bus side updates (on the connection's loop thread among others); never
    /// held across a wait.
    struct Status {
        var owner: String?
        var statistics = Statistics()
        /// The registry announced a segment for this channel: check whether the
        /// channel moved to an unrelated segment (a new publisher).
        var channelMayHaveMoved = false
        /// The owner that left the bus, until its departure is reported.
        var ownerLeft: String?
        /// The last owner seen leaving (not cleared when reported).
        var departed: String?
        /// The successor that cannot be had: its publisher left and its segments with it.
        var abandoned: String?
        /// The owner whose departure is being watched.
        var watched: String?
    }

    private init(
        channel: String, connection: DBusConnection, ownsConnection: Bool, locator: SegmentLocator, options: Options,
        reading: sending Reading, owner: String?, logger: Logger
    ) {
        self.channel = channel
        self.connection = connection
        self.ownsConnection = ownsConnection
        self.locator = locator
        self.options = options
        self.logger = logger
        metrics = SubscriberMetrics(channel: channel)
        var reading = reading
        if case .spin(let budget) = options.wait { reading.spinPacing = SpinPacing(budget: budget) }
        self.reading = Lock(reading)
        status = Lock(Status(owner: owner))
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        futexWaiter = options.wait.usesDoorbell ? FutexWaiter() : nil
    }

    /// Opens `channel` on `bus` with a connection of its own.
    public static func open(
        channel: String, on bus: DBusConnection.Bus = .session, options: Options = Options(),
        logger: Logger = Logger(label: "org.shmbus.subscriber")
    ) async throws(ShmBusError) -> Subscriber {
        let connection = try await ShmBusError.rethrowing { try await DBusConnection.connect(to: bus, logger: logger) }
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
    ) async throws(ShmBusError) -> Subscriber {
        try await open(channel: channel, connection: connection, ownsConnection: false, options: options, logger: logger)
    }

    private static func open(
        channel: String, connection: DBusConnection, ownsConnection: Bool, options: Options, logger: Logger
    ) async throws(ShmBusError) -> Subscriber {
        if let problem = ChannelName.problem(with: channel) {
            throw .invalidArgument("invalid channel name '\(channel)': \(problem)")
        }
        let registry = RegistryClient(connection: connection)
        let locator = SegmentLocator(
            channel: channel, sources: BusSegmentSources(registry: registry), logger: logger, lease: SubscriberLease(anchor: connection))
        // Listen first, then look: nothing committed after this point is missed.
        let committed = Lock<WeakSubscriber?>(nil)
        var handler: DBusSignalHandler?
        // On the connection's loop thread: check the sender, then wake the reader.
        // A futex (or spin) subscriber sleeps on the doorbell instead and leaves the
        // signals alone: waking its bus thread for each commit would only compete for
        // the CPU with the reader it is meant to wake.
        if !options.wait.usesDoorbell {
            var rule = Publisher1.Committed.matchRule(path: ShmBusProtocol.publisherPath)
            rule.arguments = [0: channel]
            handler = try await ShmBusError.rethrowing {
                try await connection.onSignal(matching: rule) { message in
                    committed.withLock { $0?.subscriber }?.committed(by: message.sender)
                }
            }
        }
        let events = try await registry.events()
        // The current segment can be replaced and dropped between looking it up and
        // opening it (a fast publisher collecting garbage): then look again.
        var found: (owner: String, opened: OpenedSegment)?
        while found == nil {
            let current = try await ShmBusError.rethrowing { try await locator.waitForChannel(timeout: options.waitForChannel) }
            if let opened = try await locator.openIfRegistered(current.segment) { found = (current.owner, opened) }
        }
        guard let (owner, opened) = found else { throw .notFound("no channel '\(channel)'") }
        let cursor: ChannelCursor
        do {
            cursor = try ChannelCursor(segment: opened.reader, start: options.start)
        } catch {
            throw ShmBusError(error, context: "channel '\(channel)'")
        }
        let subscriber = Subscriber(
            channel: channel, connection: connection, ownsConnection: ownsConnection, locator: locator, options: options,
            reading: Reading(cursor: cursor, doorbell: opened.doorbell), owner: owner.isEmpty ? nil : owner, logger: logger)
        // A channel whose publisher had already left (its persistent segments stay):
        // the departure is reported once everything there was read.
        if owner.isEmpty { subscriber.status.withLock { $0.ownerLeft = "" } }
        subscriber.committedHandler.withLock { $0 = handler }
        committed.withLock { $0 = WeakSubscriber(subscriber) }
        subscriber.listen(to: events)
        subscriber.startTicker()
        await subscriber.watchOwner()
        return subscriber
    }

    deinit {
        cancel()
    }

    /// Ends the subscription: iteration ends, match rules are removed, and an own
    /// connection is closed. On a channel whose memory its publisher reuses, the
    /// connection carries this subscriber's lease (the publisher forgets it when the
    /// connection leaves the bus), so it is not closed here: it closes once the
    /// subscriber and every chunk read through it are gone.
    public func cancel() {
        cancelled.withLock { $0 = true }
        wake.finish()
        committedHandler.withLock { $0?.cancel() }
        for task in tasks.withLock({ $0 }) { task.cancel() }
        if ownsConnection, locator.lease.page == nil { connection.close() }
    }

    public var statistics: Statistics { status.withLock { $0.statistics } }

    /// The last sequence delivered (or passed over).
    public var lastSequence: UInt64? { reading.withLock { $0.cursor.lastSequence } }

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
                    case .gap(let missed, let after)?:
                        metrics.gaps.increment()
                        metrics.missed.increment(by: Int64(clamping: missed))
                        events.append(.gap(missed: missed, after: after))
                    case .retired(let successor)?:
                        if !events.isEmpty { return .events(events) }
                        // A successor that left with its publisher: the end, for now.
                        return status.withLock { $0.abandoned == successor.name } ? .nothing : .retired(successor)
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

    var wakeIsFinished: Bool { cancelled.withLock { $0 } }
}

/// A weak reference for the `Committed` handler: the connection's loop holds the
/// handler, and must not keep the subscriber alive.
final class WeakSubscriber: Sendable {
    weak let subscriber: Subscriber?

    init(_ subscriber: Subscriber) {
        self.subscriber = subscriber
    }
}
