import SharedSegments

/// The newest live chunk with a key and what it says it holds (`LookupChunk`): enough
/// for a client to decide whether to map the segment at all.
public struct ChunkDescription: Hashable, Sendable {
    public var segment: String
    /// The payload's byte offset in the segment.
    public var offset: UInt64
    public var length: UInt64
    public var sequence: UInt64
    /// CLOCK_REALTIME nanoseconds when the writer reserved the chunk.
    public var timestamp: UInt64
    /// CLOCK_REALTIME nanoseconds after which readers skip it; 0 = never.
    public var expiry: UInt64
    /// Checked against ``length`` as a reader checks a record's.
    public var attributes: ChunkAttributes

    public init(
        segment: String, offset: UInt64, length: UInt64, sequence: UInt64, timestamp: UInt64, expiry: UInt64,
        attributes: ChunkAttributes
    ) {
        self.segment = segment
        self.offset = offset
        self.length = length
        self.sequence = sequence
        self.timestamp = timestamp
        self.expiry = expiry
        self.attributes = attributes
    }
}
