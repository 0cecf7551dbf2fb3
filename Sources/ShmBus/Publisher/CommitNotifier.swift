import DBus
import Locking
import SharedSegments

/// A range of committed chunks in one segment, as announced by `Committed`.
public struct CommittedRange: Sendable, Hashable {
    public var segment: String
    public var generation: UInt64
    /// Byte offsets in the segment: the first record's start and the last record's end.
    public var startOffset: UInt64
    public var endOffset: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64

    public init(segment: String, generation: UInt64, startOffset: UInt64, endOffset: UInt64, firstSequence: UInt64, lastSequence: UInt64) {
        self.segment = segment
        self.generation = generation
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
    }

    /// Grows this range to cover another one in the same segment as well.
    mutating func cover(startOffset: UInt64, endOffset: UInt64, firstSequence: UInt64, lastSequence: UInt64) {
        self.startOffset = min(self.startOffset, startOffset)
        self.endOffset = max(self.endOffset, endOffset)
        self.firstSequence = min(self.firstSequence, firstSequence)
        self.lastSequence = max(self.lastSequence, lastSequence)
    }
}

/// Emits `org.shmbus.Publisher1.Committed` for a channel, coalescing under load.
///
/// Commits are merged into one pending range and announced at most once per
/// `minimumInterval`: the bus carries at most one signal per interval, and the last
/// chunk of a burst is announced at most one interval after it was committed. A change
/// of segment (after garbage collection) flushes the pending range first, so ranges
/// never span segments.
///
/// Sent at once only to a reader that waits for it: a subscriber of the bus path that
/// has read everything says so in the writer's doorbell (``Doorbell/expectSignal()``),
/// and the next commit is then announced at once, even within the interval. Back-to-back
/// transfers to a waiting reader (a request/response loop, a 4 KiB blob after the
/// last) would otherwise each wait for the timer: most of a 4 KiB transfer's 0.76 ms.
/// Every reader may write the doorbell, so a reader that always says it waits gets at
/// most one signal per ``urgentSpacing`` (16,000 a second) from a publisher that
/// commits faster, no more than it could send the bus itself.
///
/// When nobody says it waits, even the first commit after a quiet period waits for the
/// interval (as long as the channel has a doorbell; without one, it goes at once). The
/// readers it might have served are either busy (they look at the segment before they
/// next wait) or not on the bus path: a futex or spin reader has just been woken by the
/// doorbell, and a signal sent now would wake the publisher's connection thread and the
/// dbus-daemon beside it, three runnable threads for the two cores of the machines we
/// measure on (docs/BENCHMARKS.md, "Latency paths": the futex path 3.45× the bare wake
/// with the signal sent at once, 1.96× without). A bus reader that does not use the
/// doorbell (`busctl monitor`, a binding that only listens) hears every commit within
/// one interval, as it does under load.
final class CommitNotifier: Sendable {
    private struct State {
        var pending: CommittedRange?
        var lastSent: ContinuousClock.Instant?
        var flushScheduled = false
        var signalsSent: UInt64 = 0
    }

    let connection: DBusConnection
    let channel: String
    let minimumInterval: Duration
    /// Where waiting readers say so; nil: always coalesce.
    let doorbell: Doorbell?
    private let state = Lock(State())

    /// The least time between a signal and one sent early for a waiting reader.
    var urgentSpacing: Duration { minimumInterval / 16 }

    init(connection: DBusConnection, channel: String, minimumInterval: Duration, doorbell: Doorbell? = nil) {
        self.connection = connection
        self.channel = channel
        self.minimumInterval = minimumInterval
        self.doorbell = doorbell
    }

    /// How many `Committed` signals were emitted.
    var signalsSent: UInt64 { state.withLock { $0.signalsSent } }

    /// Records commits; emits now or schedules the coalesced emission.
    func committed(_ range: CommittedRange) {
        committed(
            segment: range.segment, generation: range.generation, startOffset: range.startOffset, endOffset: range.endOffset,
            firstSequence: range.firstSequence, lastSequence: range.lastSequence)
    }

    /// Records commits in generation `generation` of the channel (segment `segment`);
    /// emits now or schedules the coalesced emission.
    ///
    /// This runs for every chunk a publisher commits, so a commit that joins the pending
    /// range extends it in place: `segment` is copied (a reference count bump) only when
    /// a new range starts.
    func committed(
        segment: String, generation: UInt64, startOffset: UInt64, endOffset: UInt64, firstSequence: UInt64, lastSequence: UInt64
    ) {
        let (toSend, scheduleAfter) = state.withLock { state -> ([CommittedRange], Duration?) in
            var out: [CommittedRange] = []
            if state.pending?.generation == generation {
                // The union, not just a later end: the registrar's whole-generation range
                // can arrive after a publisher's own commit, or be read before it.
                state.pending?.cover(startOffset: startOffset, endOffset: endOffset, firstSequence: firstSequence, lastSequence: lastSequence)
            } else {
                // A new generation: the previous one's range goes out now, so that no
                // range spans two segments.
                if let previous = state.pending { out.append(previous) }
                state.pending = CommittedRange(
                    segment: segment, generation: generation, startOffset: startOffset, endOffset: endOffset,
                    firstSequence: firstSequence, lastSequence: lastSequence)
            }
            state.signalsSent += UInt64(out.count)
            // While a flush is scheduled, commits only extend the pending range (no clock
            // read) unless a reader waits. The flag is read without a fence: one seen late
            // is served by the flush, as it would be without the flag.
            let waiting = doorbell?.isSignalExpected == true
            if state.flushScheduled, !waiting { return (out, nil) }
            let now = ContinuousClock.now
            // Time since the last signal; nil: none yet, or longer ago than the interval.
            let since = state.lastSent.map { now - $0 }.flatMap { $0 < minimumInterval ? $0 : nil }
            let wait: Duration? =
                if waiting {
                    // For the reader that waits, as soon as the spacing allows.
                    since.flatMap { $0 < urgentSpacing ? urgentSpacing - $0 : nil }
                } else if doorbell == nil, since == nil {
                    nil  // No doorbell to say who waits: a quiet channel's commit goes at once.
                } else {
                    minimumInterval - (since ?? .zero)
                }
            if let wait {
                if state.flushScheduled { return (out, nil) }
                state.flushScheduled = true
                return (out, wait)
            }
            if waiting { doorbell?.takeSignalExpectation() }
            if let pending = state.pending { out.append(pending) }
            state.pending = nil
            state.lastSent = now
            state.signalsSent += 1
            return (out, nil)
        }
        for range in toSend { emit(range) }
        if let delay = scheduleAfter {
            Task { [self] in
                try? await Task.sleep(for: delay)
                flush()
            }
        }
    }

    /// Emits the pending range, if any, now.
    func flush() {
        let range = state.withLock { state -> CommittedRange? in
            state.flushScheduled = false
            guard let pending = state.pending else { return nil }
            state.pending = nil
            state.lastSent = .now
            state.signalsSent += 1
            return pending
        }
        if let range { emit(range) }
    }

    private func emit(_ range: CommittedRange) {
        let signal = Publisher1.Committed(
            channel: channel, segment: range.segment, generation: range.generation, startOffset: range.startOffset,
            endOffset: range.endOffset, firstSequence: range.firstSequence, lastSequence: range.lastSequence)
        do {
            try connection.emit(signal, from: ShmBusProtocol.publisherPath)
        } catch {
            // The connection is gone; subscribers still find the chunks by reading the segment.
            connection.logger.debug("Committed not sent", metadata: ["error": "\(error)"])
        }
    }
}
