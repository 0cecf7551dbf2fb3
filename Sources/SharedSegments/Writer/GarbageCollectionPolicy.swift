/// When a channel's writer (`ChannelWriter`) collects garbage, and what it keeps.
public struct GarbageCollectionPolicy: Sendable, Hashable {
    /// Collect when dead (obsolete) bytes reach this fraction of the record area, even
    /// if the segment is not full. 1 or more: only when full.
    public var deadRatio: Double
    /// The most live data a new generation starts with, as a fraction of its record
    /// area. When more is live, the oldest live chunks are dropped (readers that had
    /// not reached them see a gap of exactly their count), so a segment never fills with
    /// copies and publishing never stalls.
    public var retainRatio: Double

    public init(deadRatio: Double = 0.5, retainRatio: Double = 0.25) {
        self.deadRatio = deadRatio
        self.retainRatio = min(max(retainRatio, 0), 1)
    }

    public static let `default` = GarbageCollectionPolicy()
    /// Only when the segment is full.
    public static let whenFull = GarbageCollectionPolicy(deadRatio: 2)
}
