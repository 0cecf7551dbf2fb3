import SharedSegments

/// How far a subscriber is behind, read from the shared segment's header.
extension Subscriber {
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
}
