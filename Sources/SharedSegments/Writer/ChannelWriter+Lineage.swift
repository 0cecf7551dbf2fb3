/// A channel's history as a new writer takes it over: speculo's rule that a channel is
/// one lineage, whoever writes it.
///
/// Built from the segments a departed writer left (read-only, every record
/// validated): the newest live chunk of each key and every live chunk without a key,
/// the highest generation, and the last sequence any valid record or header used.
/// The new writer's first segment is the next generation, holds copies of those
/// chunks with their sequences, and continues the sequences after the last one.
public struct Lineage: Sendable {
    /// The highest generation among the predecessor's segments.
    public var generation: UInt64
    /// The last sequence the history used: the highest of the headers' last and base
    /// sequences and of every valid record. (A writer killed between its two stores
    /// leaves the header's last sequence one behind the record readers have read.)
    public var lastSequence: UInt64
    /// The chunks to carry over, in sequence order.
    public var chunks: [Chunk]

    /// Reads `segments` (in any order). Chunks with a key in `excludingKeys` are left
    /// out: their writer is about to publish those keys again, which would make the
    /// copies obsolete at once. A segment is read up to its first invalid record.
    public init(segments: [SegmentReader], excludingKeys: Set<String> = [], now: UInt64 = RealtimeClock.now()) {
        var generation: UInt64 = 0
        var last: UInt64 = 0
        var newestByKey: [String: Chunk] = [:]
        var keyless: [UInt64: Chunk] = [:]
        for segment in segments {
            generation = max(generation, segment.header.generation)
            last = max(last, segment.header.baseSequence)
            guard let live = try? segment.liveState() else { continue }
            last = max(last, live.lastSequence)
            var offset = UInt64(SegmentLayout.headerSize)
            while offset < live.committedEnd, let chunk = try? segment.chunk(at: offset, limit: live.committedEnd) {
                offset = chunk.recordEnd
                last = max(last, chunk.sequence)
                guard chunk.isLive(at: now), !excludingKeys.contains(chunk.key) else { continue }
                if chunk.key.isEmpty {
                    // A collection's copies repeat a sequence in two segments: one is enough.
                    keyless[chunk.sequence] = chunk
                } else if newestByKey[chunk.key].map({ $0.sequence < chunk.sequence }) ?? true {
                    // Two departed writers may each have left a live chunk of a key: the
                    // history has one newest, the later one.
                    newestByKey[chunk.key] = chunk
                }
            }
        }
        self.generation = generation
        lastSequence = last
        chunks = (Array(newestByKey.values) + Array(keyless.values)).sorted { $0.sequence < $1.sequence }
    }

    /// The bytes the carried-over records take in a segment.
    public var recordBytes: UInt64 { chunks.reduce(0) { $0 + ($1.recordEnd - $1.recordOffset) } }
}

extension ChannelWriter {
    /// Continues `lineage`: the first segment is generation `lineage.generation + 1`,
    /// big enough for the carried-over chunks on top of `capacity` (later generations
    /// get `capacity`), and holds copies of them with their sequences and keys; new
    /// chunks continue after `lineage.lastSequence`.
    ///
    /// Each record is copied byte for byte and validated again in the new segment, which
    /// only this writer can change: a predecessor still alive after leaving the bus
    /// could rewrite its own mapping between the first validation and the copy. A record
    /// that fails is left out.
    public convenience init(
        channel: String, capacity: UInt64, policy: GarbageCollectionPolicy = .default, continuing lineage: Lineage,
        hugePages: Bool = false, reusesMemory: Bool = false
    ) throws(SegmentError) {
        try self.init(
            channel: channel, capacity: capacity, firstCapacity: capacity + lineage.recordBytes, policy: policy,
            lastSequence: lineage.lastSequence, generation: lineage.generation + 1, hugePages: hugePages,
            reusesMemory: reusesMemory)
        try inherit(lineage.chunks)
    }

    private func inherit(_ chunks: [Chunk]) throws(SegmentError) {
        let L = SegmentLayout.self
        let segment = current
        let reader = try segment.reader()
        var end = UInt64(L.headerSize)
        for chunk in chunks where chunk.sequence <= lastSequence {
            let length = chunk.recordEnd - chunk.recordOffset
            guard length <= segment.capacity - end else { break }
            chunk.withRecordBytes { record in
                segment.mapping.base.advanced(by: Int(end)).copyMemory(from: record.baseAddress!, byteCount: record.count)
            }
            // Live here: clear the flags (the checksum does not cover them).
            segment.mapping.store(UInt32(0), at: Int(end) + L.recordFlagsOffset)
            guard let copy = try? reader.chunk(at: end, limit: end + length), copy.sequence == chunk.sequence,
                copy.key == chunk.key, copy.recordEnd == end + length
            else { continue }
            end += length
            segment.commit(end: end, sequence: copy.sequence, bytes: length)
            segment.noteExpiry(copy.expiry, recordAt: copy.recordOffset, length: length)
            if !copy.key.isEmpty { keyIndex[Array(copy.key.utf8)] = (copy.recordOffset, length) }
        }
        // The header's last sequence is the history's, even where its newest chunks were
        // obsolete and not carried over.
        segment.mapping.storeRelease64(lastSequence, at: L.lastSequenceOffset)
    }
}
