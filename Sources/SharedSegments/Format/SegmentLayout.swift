/// Byte offsets of the segment format, versions 1 and 2 (docs/FORMAT.md is the
/// reference; a test parses its tables and compares them with these constants).
public enum SegmentLayout {
    /// `"SHMBUSG1"` read as a little-endian 64-bit integer.
    public static let magic: UInt64 = 0x3147_5355_424D_4853
    public static let version: UInt32 = 1
    /// The version of a segment whose memory its writer may use again for a later
    /// generation once no reader's lease holds it (docs/FORMAT.md, "Reused memory").
    /// The layout is version 1's; a reader must hold a lease before it reads records.
    public static let reusableVersion: UInt32 = 2
    /// The header occupies the first page; records start right after it.
    public static let headerSize = 4096
    /// Records and payloads are aligned to this.
    public static let alignment = 64
    /// Capacities are multiples of this (the page size).
    public static let pageSize = 4096
    public static let maximumChannelLength = 200
    public static let maximumKeyLength = 255

    // MARK: Header, immutable part (written before sealing, covered by the header checksum)

    public static let magicOffset = 0            // u64
    public static let versionOffset = 8          // u32
    public static let headerSizeOffset = 12      // u32
    public static let capacityOffset = 16        // u64
    public static let segmentIDOffset = 24       // 16 bytes
    public static let generationOffset = 40      // u64
    public static let baseSequenceOffset = 48    // u64
    public static let createdOffset = 56         // u64, CLOCK_REALTIME ns
    public static let writerPIDOffset = 64       // u32
    public static let channelLengthOffset = 68   // u16
    public static let channelOffset = 72         // 200 bytes
    /// Bytes `[0, headerChecksumOffset)` are covered by the header checksum.
    public static let headerChecksumOffset = 272 // u64

    // MARK: Header, mutable part (atomic words, each group on its own cache line)

    public static let committedEndOffset = 384   // u64, release/acquire: the commit word
    public static let lastSequenceOffset = 392   // u64, release/acquire
    public static let recordCountOffset = 400    // u64, relaxed
    public static let liveBytesOffset = 448      // u64, relaxed
    public static let deadBytesOffset = 456      // u64, relaxed
    public static let liveChunksOffset = 464     // u64, relaxed
    public static let stateOffset = 512          // u32, release/acquire
    public static let successorIDOffset = 520    // 16 bytes, written before the retired bit

    /// Bit of the state word: the segment is retired; `successorID` names its successor.
    public static let retiredFlag: UInt32 = 1
    /// Bit of the state word (version 2): the writer wants the memory back for a later
    /// generation. A reader that does not hold this generation already must not start
    /// reading it; the writer takes the memory only once no lease holds it.
    public static let reclaimedFlag: UInt32 = 2

    // MARK: Record header (at the record's offset, 64-byte aligned)

    /// `"CHNK"` read as a little-endian 32-bit integer.
    public static let recordMagic: UInt32 = 0x4B4E_4843
    public static let recordHeaderSize = 64
    public static let recordMagicOffset = 0      // u32
    public static let recordFlagsOffset = 4      // u32, atomic OR: obsolete bit
    public static let recordLengthOffset = 8     // u64
    public static let recordSequenceOffset = 16  // u64
    public static let recordTimestampOffset = 24 // u64, CLOCK_REALTIME ns
    public static let recordExpiryOffset = 32    // u64, CLOCK_REALTIME ns, 0 = never
    public static let recordPayloadLengthOffset = 40 // u64
    public static let recordPayloadOffsetOffset = 48 // u32, from the record's start
    public static let recordKeyLengthOffset = 52 // u16
    public static let recordAttributesLengthOffset = 54 // u16, 0 = no attributes block
    public static let recordChecksumOffset = 56  // u64
    /// The key follows the record header.
    public static let recordKeyOffset = 64

    /// Bit of a record's flags word: the chunk is obsolete (a newer one has its key).
    public static let obsoleteFlag: UInt32 = 1

    // MARK: Doorbell (a separate one-page memfd per writer)

    /// `"SHMBDOOR"` read as a little-endian 64-bit integer.
    public static let doorbellMagic: UInt64 = 0x524F_4F44_424D_4853
    public static let doorbellSize = 4096
    public static let doorbellMagicOffset = 0    // u64
    public static let doorbellWordOffset = 8      // u32, futex word
    public static let doorbellSleepingOffset = 12 // u32, 1: a reader may sleep on the word
    public static let doorbellAwaitingSignalOffset = 16 // u32, 1: a reader waits for `Committed`

    // MARK: Lease (a one-page memfd per reader, written by the reader alone)

    /// `"SHMBLEAS"` read as a little-endian 64-bit integer.
    public static let leaseMagic: UInt64 = 0x5341_454C_424D_4853
    public static let leaseSize = 4096
    public static let leaseMagicOffset = 0       // u64
    /// The lowest and highest generation the reader holds beyond its slots, 0 and 0
    /// for none. The reader widens the range before it narrows it, one store at a time.
    public static let leaseLowOffset = 64        // u64, seq_cst
    public static let leaseHighOffset = 72       // u64, seq_cst
    /// Generations the reader holds, one per slot, 0 for a free slot.
    public static let leaseSlotsOffset = 128     // u64 × leaseSlotCount, seq_cst
    public static let leaseSlotCount = 8

    /// Seeds of the two checksums (docs/FORMAT.md, "Checksums").
    public static let headerChecksumSeed: UInt64 = 0x5348_4D42_5553_4844
    public static let recordChecksumSeed: UInt64 = 0x5348_4D42_5553_5243

    /// `value` rounded up to a multiple of `alignment` (a power of two), or nil on overflow.
    static func alignUp(_ value: UInt64, _ alignment: Int) -> UInt64? {
        let mask = UInt64(alignment - 1)
        let (sum, overflow) = value.addingReportingOverflow(mask)
        return overflow ? nil : sum & ~mask
    }
}

extension SegmentLayout {
    /// The largest payload one chunk with a key of `keyLength` bytes and an attributes
    /// block of `attributesLength` bytes can have in a segment of `capacity` bytes (the
    /// inverse of ``capacity(forOneChunkOf:keyLength:attributesLength:)``); nil when not
    /// even an empty one fits.
    public static func largestPayload(capacity: UInt64, keyLength: Int, attributesLength: Int = 0) -> UInt64? {
        guard let payloadOffset = RecordHeader.layout(keyLength: keyLength, attributesLength: attributesLength, payloadLength: 0)?.payloadOffset,
            capacity >= UInt64(headerSize) + payloadOffset
        else { return nil }
        // The record area is a whole number of 64-byte units, so a payload that ends
        // exactly at the capacity needs no padding.
        return capacity / UInt64(alignment) * UInt64(alignment) - UInt64(headerSize) - payloadOffset
    }

    /// The smallest segment capacity (header included, whole pages) that holds one
    /// chunk of `payloadLength` bytes with a key of `keyLength` bytes and an attributes
    /// block of `attributesLength` bytes: what a one-shot publish asks for, so that the
    /// memory held matches the data. Nil on overflow.
    public static func capacity(forOneChunkOf payloadLength: UInt64, keyLength: Int, attributesLength: Int = 0) -> UInt64? {
        guard let record = RecordHeader.layout(keyLength: keyLength, attributesLength: attributesLength, payloadLength: payloadLength)
        else { return nil }
        let (total, overflow) = record.length.addingReportingOverflow(UInt64(headerSize))
        guard !overflow else { return nil }
        return alignUp(max(total, UInt64(headerSize + pageSize)), pageSize)
    }
}
