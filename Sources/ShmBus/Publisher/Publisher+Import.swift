import SharedSegments

extension Publisher {
    /// Where an imported chunk came from: its sequence, timestamp and expiry (CLOCK_REALTIME
    /// ns, 0 = never) in the channel on the host that published it first.
    public struct Origin: Sendable, Hashable {
        public var sequence: UInt64
        public var timestamp: UInt64
        public var expiry: UInt64
        public init(sequence: UInt64, timestamp: UInt64, expiry: UInt64) {
            self.sequence = sequence
            self.timestamp = timestamp
            self.expiry = expiry
        }
    }

    /// Publishes a chunk written in place that keeps another host's sequence, timestamp
    /// and expiry: for a bridge that is a channel's publisher on this host for a channel
    /// published elsewhere (docs/BRIDGE.md). `origin.sequence` must be above
    /// ``lastSequence`` (`invalidArgument` otherwise); the sequences it skips are a gap
    /// to this host's subscribers, as they were on the other host. `fill` as for
    /// ``publish(key:length:expiresIn:attributes:_:)``: if it throws, nothing is published
    /// and its error is rethrown as it is.
    @discardableResult
    public func publish(
        key: String, length: Int, origin: Origin, attributes: ChunkAttributes = ChunkAttributes(),
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> PublishedChunk {
        do {
            return try publishInPlace(
                key: key, length: length, expiresIn: nil, attributes: attributes,
                origin: (origin.sequence, origin.timestamp, origin.expiry), fill)
        } catch {
            switch error {
            case .fill(let error): throw error
            case .shmBus(let error): throw error
            }
        }
    }
}
