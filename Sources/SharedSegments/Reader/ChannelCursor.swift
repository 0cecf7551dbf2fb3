/// Reads a channel's chunks in sequence order across generations: skips obsolete and
/// expired chunks, follows a retired segment to its successor, and reports chunks it
/// can no longer deliver as a gap with their exact count (docs/FORMAT.md, "Gaps").
///
/// Not thread-safe: one reader task or thread owns a cursor.
public final class ChannelCursor {
    /// Where reading starts.
    public enum Start: Sendable, Hashable {
        /// The oldest chunk still in the segment.
        case oldest
        /// Only chunks committed after the cursor was made.
        case now
        /// The chunk with this sequence and those after it (a gap if it is gone).
        case sequence(UInt64)
    }

    /// What reading produced.
    public enum Event: Sendable {
        case chunk(Chunk)
        /// `missed` sequences after `after` will never be delivered (collected away).
        case gap(missed: UInt64, after: UInt64)
        /// The segment is retired and read to its end; open `successor` and
        /// ``ChannelCursor/move(to:)`` there. Only without a resolver.
        case retired(successor: SegmentID)
    }

    /// Opens the successor of a retired segment (or, when it is gone, whatever segment
    /// the channel continues in).
    public typealias Resolver = (SegmentID) throws(SegmentError) -> SegmentReader

    // One owner (see the type's documentation): exclusivity is checked statically.
    @exclusivity(unchecked) public private(set) var segment: SegmentReader
    /// The record offset the next read starts at.
    @exclusivity(unchecked) public private(set) var position: UInt64
    /// The committed end last loaded from the segment.
    @exclusivity(unchecked) private var limit: UInt64 = 0
    /// The last sequence delivered or passed over; nil before the first.
    @exclusivity(unchecked) public private(set) var lastSequence: UInt64?
    /// Chunks passed over because they were obsolete or expired when reached.
    @exclusivity(unchecked) public private(set) var skippedChunks: UInt64 = 0
    private let resolver: Resolver?

    public init(segment: SegmentReader, start: Start, resolver: Resolver? = nil) throws(SegmentError) {
        self.segment = segment
        self.resolver = resolver
        position = UInt64(SegmentLayout.headerSize)
        switch start {
        case .oldest:
            lastSequence = nil
        case .now:
            let state = try segment.liveState()
            position = state.committedEnd
            lastSequence = state.lastSequence
        case .sequence(let first):
            lastSequence = first == 0 ? nil : first - 1
        }
    }

    /// Switches to another segment (after the registry said the channel moved on),
    /// reading it from its start; chunks already delivered are skipped.
    public func move(to reader: SegmentReader) {
        segment = reader
        position = UInt64(SegmentLayout.headerSize)
        limit = 0
    }

    /// Whether ``next()`` would return something without waiting: a committed record
    /// past the position, or a retired segment to follow.
    public func hasPending() -> Bool {
        guard let state = try? segment.liveState() else { return true }
        return state.committedEnd > position || state.isRetired
    }

    /// The next event, or nil when nothing new is committed yet.
    public func next() throws(SegmentError) -> Event? {
        while true {
            if position >= limit {
                // Look at the header only when the records known to be committed are
                // used up: reading a run of chunks costs one acquire load per run.
                let state = try segment.liveState()
                limit = state.committedEnd
                if position >= limit {
                    guard let successor = state.successor else { return nil }
                    guard let resolver else { return .retired(successor: successor) }
                    move(to: try resolver(successor))
                    continue
                }
            }
            let chunk = try segment.chunk(at: position, limit: limit)
            if let last = lastSequence {
                if chunk.sequence <= last {
                    // Delivered already (a copy made by garbage collection), or a
                    // writer going backwards: either way not new.
                    position = chunk.recordEnd
                    continue
                }
                if chunk.sequence > last + 1 {
                    // Report the gap first; the chunk comes on the next call.
                    lastSequence = chunk.sequence - 1
                    return .gap(missed: chunk.sequence - last - 1, after: last)
                }
            }
            position = chunk.recordEnd
            lastSequence = chunk.sequence
            if !chunk.isObsolete, chunk.expiry == 0 || chunk.expiry > RealtimeClock.now() { return .chunk(chunk) }
            skippedChunks += 1
        }
    }
}

/// How a reader that does not use the bus waits for new chunks.
public enum WaitStrategy: Sendable {
    /// Sleep this long between looks.
    case poll(Duration)
    /// Sleep on the writer's doorbell, at most `timeout` at a time.
    case futex(Doorbell, timeout: Duration)
}

extension ChannelCursor {
    /// Blocks the calling thread until ``next()`` has something, or `timeout` passes.
    /// Returns whether something is pending.
    @discardableResult
    public func waitForData(_ strategy: WaitStrategy, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !hasPending() {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return false }
            switch strategy {
            case .poll(let interval):
                Self.sleep(min(interval, left))
            case .futex(let doorbell, let step):
                doorbell.wait(timeout: min(step, left)) { hasPending() }
            }
        }
        return true
    }

    private static func sleep(_ duration: Duration) {
        var request = duration.timespec
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}

import ShmBusSystem
import Glibc
