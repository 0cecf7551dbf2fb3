/// Where a published chunk is.
public struct PublishedChunk: Sendable, Hashable, Codable {
    /// The segment's name.
    public var segment: String
    public var generation: UInt64
    /// The payload's byte offset in the segment.
    public var offset: UInt64
    public var length: UInt64
    public var sequence: UInt64
}
