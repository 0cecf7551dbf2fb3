import CShmBusLinux
import Foundation

/// One committed chunk: metadata plus a zero-copy view of its payload in the mapped
/// segment.
///
/// The view keeps the mapping alive: a chunk (or `Data` made from it) stays readable
/// after its segment is retired or removed. The payload's bounds were validated, but
/// its bytes are shared memory: a hostile writer could change them while you read.
public struct Chunk: Sendable {
    public let sequence: UInt64
    public let key: String
    /// CLOCK_REALTIME nanoseconds when the writer reserved the chunk.
    public let timestamp: UInt64
    /// CLOCK_REALTIME nanoseconds after which readers skip it; 0 = never.
    public let expiry: UInt64
    public let segment: SegmentID
    public let generation: UInt64
    /// The record's byte range in the segment.
    public let recordOffset: UInt64
    public let recordEnd: UInt64
    /// The payload's byte offset in the segment.
    public let payloadOffset: UInt64
    public let count: Int
    /// What the chunk says it holds (docs/FORMAT.md, "Attributes"); empty when it says
    /// nothing. Checked when the record was read: an array or image of a known type
    /// fits ``count``.
    public let attributes: ChunkAttributes
    let mapping: MemoryMapping
    /// Keeps the chunk's generation held on the reader's lease, so that a writer that
    /// reuses memory leaves these bytes alone while the chunk (or `Data` made from it)
    /// lives; nil when the segment's memory is never reused.
    let hold: LeaseHold?

    init(
        record: RecordHeader, key: String, attributes: ChunkAttributes, segment: SegmentID, generation: UInt64, mapping: MemoryMapping,
        hold: LeaseHold? = nil
    ) {
        sequence = record.sequence
        self.key = key
        self.attributes = attributes
        timestamp = record.timestamp
        expiry = record.expiry
        self.segment = segment
        self.generation = generation
        recordOffset = record.offset
        recordEnd = record.end
        payloadOffset = record.absolutePayloadOffset
        count = Int(record.payloadLength)
        self.mapping = mapping
        self.hold = hold
    }

    /// Whether the chunk holds its generation on a reader's lease (its segment's
    /// memory is reused once nobody holds it; docs/FORMAT.md, "Reused memory").
    public var isLeased: Bool { hold != nil }

    /// Calls `body` with the payload in place: no copy.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: mapping.base.advanced(by: Int(payloadOffset)), count: count))
    }

    /// The payload as `Data` without a copy: its deallocator holds the mapping.
    public var data: Data {
        guard count > 0 else { return Data() }
        let mapping = self.mapping
        let hold = self.hold
        return Data(
            bytesNoCopy: mapping.base.advanced(by: Int(payloadOffset)), count: count,
            deallocator: .custom { _, _ in withExtendedLifetime((mapping, hold)) {} })
    }

    /// Populates the page tables for the payload in one system call
    /// (`madvise(MADV_POPULATE_READ)`, Linux 5.14+), so that reading a large chunk does
    /// not take a page fault every few pages. Optional; a no-op where unsupported, and
    /// nearly free for memory read through this mapping before (a segment whose
    /// memory is reused), whose whole 2 MiB blocks it does not populate again.
    public func prefetch() {
        mapping.populate(offset: Int(payloadOffset), count: count)
    }

    /// The whole record in place (header, key, payload), for copying it byte for byte.
    func withRecordBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: mapping.base.advanced(by: Int(recordOffset)), count: Int(recordEnd - recordOffset)))
    }

    /// A copy of the payload.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Whether the obsolete bit is set now (a newer chunk has the same key).
    public var isObsolete: Bool {
        RecordHeader.flags(in: mapping, at: recordOffset) & SegmentLayout.obsoleteFlag != 0
    }

    /// Neither obsolete nor expired at `now` (CLOCK_REALTIME nanoseconds).
    public func isLive(at now: UInt64) -> Bool {
        !isObsolete && (expiry == 0 || expiry > now)
    }
}
