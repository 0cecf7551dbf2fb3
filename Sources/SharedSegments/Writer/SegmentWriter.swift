import CShmBusLinux
import Glibc
import ShmBusSystem

/// One segment being written: a sealed memfd its writer keeps mapped read-write.
///
/// Created, mapped, given its header and sealed (`F_SEAL_SHRINK | F_SEAL_GROW |
/// F_SEAL_FUTURE_WRITE | F_SEAL_SEAL`) before anyone else can see the descriptor; the
/// writer keeps writing through the mapping it made before sealing. Not thread-safe:
/// one writer owns it (``ChannelWriter`` does).
public final class SegmentWriter {
    public let header: SegmentHeader
    /// The segment's name (its ID in hex), computed once: publishers report it with
    /// every chunk.
    public let name: String
    /// The memfd (read-write for this process; the seals stop everyone else), owned by
    /// the writer; lend it to send it, duplicate it only for an owner of its own.
    public let fileDescriptor: UnixFileDescriptor
    let mapping: MemoryMapping
    /// The memory, for a later generation once this one is retired (when it is reusable).
    let memory: SegmentMemory
    /// The memory carried an earlier generation: padding is not zero by itself.
    let inReusedMemory: Bool
    /// How far the prefaulter has faulted this segment's memory in.
    public let prefault: PrefaultProgress
    /// The end of the last committed record.
    @exclusivity(unchecked) public private(set) var committedEnd: UInt64
    @exclusivity(unchecked) private(set) var recordCount: UInt64 = 0
    @exclusivity(unchecked) private(set) var liveBytes: UInt64 = 0
    @exclusivity(unchecked) private(set) var deadBytes: UInt64 = 0
    @exclusivity(unchecked) private(set) var liveChunks: UInt64 = 0
    public private(set) var isRetired = false
    /// Committed records with an expiry, not yet expired when last looked at, and the
    /// earliest of their expiries (`UInt64.max` when none): expired chunks are dead
    /// bytes for garbage collection as obsolete ones are.
    @exclusivity(unchecked) private var expiring: [(expiry: UInt64, offset: UInt64, length: UInt64)] = []
    @exclusivity(unchecked) private(set) var nextExpiry: UInt64 = .max

    /// Creates and seals a segment of `capacity` bytes (a multiple of 4096, header
    /// included).
    ///
    /// - Parameter hugePages: advise the kernel to back the segment with transparent
    ///   huge pages (`madvise(MADV_HUGEPAGE)`, before anything is written). Where the
    ///   system allows them for shared memory, each reader then maps the segment with
    ///   one page-table entry per 2 MiB instead of one per 4 KiB: mapping 64 MiB costs
    ///   a reader tens of microseconds instead of about 2 ms (docs/BENCHMARKS.md).
    ///   Elsewhere it changes nothing.
    public convenience init(
        channel: String, capacity: UInt64, generation: UInt64, baseSequence: UInt64, hugePages: Bool = false
    ) throws(SegmentError) {
        try self.init(
            channel: channel, generation: generation, baseSequence: baseSequence, memory: nil, capacity: capacity, hugePages: hugePages,
            reusable: false)
    }

    /// Creates and seals a segment in `memory`, made (and perhaps faulted in) earlier,
    /// or in new memory of `capacity` bytes when `memory` is nil. `reusable` writes
    /// format version 2: this memory may carry a later generation.
    ///
    /// Memory that carried an earlier generation is sealed already and has the
    /// reclaimed bit in its state word, so no reader starts on it while the header is
    /// rewritten; the counters and the successor are reset and the state word cleared
    /// last (a release store). Nobody learns this generation's name before it is done.
    init(
        channel: String, generation: UInt64, baseSequence: UInt64, memory prepared: SegmentMemory?, capacity: UInt64,
        hugePages: Bool, reusable: Bool
    ) throws(SegmentError) {
        try ChannelName.validate(channel)
        let L = SegmentLayout.self
        let capacity = prepared?.capacity ?? capacity
        guard capacity % UInt64(L.pageSize) == 0, capacity >= UInt64(L.headerSize + L.pageSize) else {
            throw SegmentError(.invalidArgument, "capacity \(capacity) must be a multiple of \(L.pageSize) of at least \(L.headerSize + L.pageSize)")
        }
        guard capacity <= UInt64(Int.max) else { throw SegmentError(.invalidArgument, "capacity \(capacity) is too large") }
        let header = SegmentHeader(
            id: .random(), channel: channel, generation: generation, baseSequence: baseSequence, capacity: capacity,
            created: RealtimeClock.now(), writerPID: UInt32(bitPattern: getpid()),
            version: reusable ? L.reusableVersion : L.version)
        let memory: SegmentMemory
        if let given = prepared {
            memory = given
        } else {
            memory = try SegmentMemory(channel: channel, capacity: capacity, hugePages: hugePages)
        }
        mapping = memory.mapping
        header.write(to: mapping)
        inReusedMemory = memory.isSealed
        if memory.isSealed {
            for offset in [L.recordCountOffset, L.liveBytesOffset, L.deadBytesOffset, L.liveChunksOffset] {
                mapping.store(UInt64(0), at: offset)
            }
            mapping.store(bytes: [UInt8](repeating: 0, count: 16), at: L.successorIDOffset)
            mapping.storeRelease32(0, at: L.stateOffset)
        } else {
            try Memfd.addSeals(Memfd.segmentSeals, to: memory.fileDescriptor)
            memory.isSealed = true
        }
        self.memory = memory
        self.header = header
        name = header.id.name
        fileDescriptor = memory.fileDescriptor
        prefault = memory.prefault
        committedEnd = UInt64(L.headerSize)
    }

    public var capacity: UInt64 { header.capacity }
    public var id: SegmentID { header.id }
    /// Bytes left for records.
    var freeBytes: UInt64 { header.capacity - committedEnd }

    // MARK: Writing

    /// Writes a record header, key and attributes block (an encoded one, or empty) at
    /// `offset` (the committed end, unless records prepared before it wait to be
    /// committed with it) and returns the payload's place; nothing is visible to
    /// readers until ``commit(end:sequence:records:bytes:)``.
    func prepare(
        at offset: UInt64? = nil, sequence: UInt64, key: UnsafeRawBufferPointer,
        attributes: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), payloadLength: UInt64, timestamp: UInt64,
        expiry: UInt64
    ) -> (recordOffset: UInt64, length: UInt64, payload: UnsafeMutableRawBufferPointer)? {
        let offset = offset ?? committedEnd
        guard offset >= committedEnd, offset <= header.capacity,
            let layout = RecordHeader.layout(keyLength: key.count, attributesLength: attributes.count, payloadLength: payloadLength),
            layout.length <= header.capacity - offset
        else { return nil }
        RecordHeader.write(
            to: mapping, at: Int(offset), length: layout.length, sequence: sequence, timestamp: timestamp, expiry: expiry,
            payloadLength: payloadLength, payloadOffset: layout.payloadOffset, key: key, attributes: attributes)
        if inReusedMemory {
            // Padding is zero (docs/FORMAT.md, "Records"): new memory is, memory an
            // earlier generation wrote is not.
            let head = attributes.isEmpty
                ? SegmentLayout.recordKeyOffset + key.count : ChunkAttributes.blockOffset(keyLength: key.count) + attributes.count
            let record = mapping.base.advanced(by: Int(offset))
            record.advanced(by: head).initializeMemory(as: UInt8.self, repeating: 0, count: Int(layout.payloadOffset) - head)
            let tail = Int(layout.payloadOffset + payloadLength)
            record.advanced(by: tail).initializeMemory(as: UInt8.self, repeating: 0, count: Int(layout.length) - tail)
        }
        let payload = UnsafeMutableRawBufferPointer(
            start: mapping.base.advanced(by: Int(offset + layout.payloadOffset)), count: Int(payloadLength))
        return (offset, layout.length, payload)
    }

    /// The sequence of the last committed record, as the header says (baseSequence
    /// while the segment is empty).
    public var lastSequence: UInt64 { mapping.load(SegmentLayout.lastSequenceOffset, as: UInt64.self) }

    /// The sequence of the first record, nil while the segment is empty. After garbage
    /// collection that is a copied chunk's, at or below `header.baseSequence`.
    public var firstSequence: UInt64? {
        let L = SegmentLayout.self
        guard committedEnd > UInt64(L.headerSize) else { return nil }
        return mapping.load(L.headerSize + L.recordSequenceOffset, as: UInt64.self)
    }

    /// Publishes everything below `end`, the `records` records of `bytes` bytes
    /// prepared since the last commit, the last of them `sequence`: a release store of
    /// the commit word, then of the last sequence (docs/FORMAT.md, "Commit protocol").
    func commit(end: UInt64, sequence: UInt64, records: UInt64 = 1, bytes: UInt64) {
        let L = SegmentLayout.self
        committedEnd = end
        recordCount += records
        liveBytes += bytes
        liveChunks += records
        mapping.storeRelease64(end, at: L.committedEndOffset)
        mapping.storeRelease64(sequence, at: L.lastSequenceOffset)
        mapping.storeRelease64(recordCount, at: L.recordCountOffset)
        mapping.storeRelease64(liveBytes, at: L.liveBytesOffset)
        mapping.storeRelease64(liveChunks, at: L.liveChunksOffset)
    }

    /// Sets a committed record's obsolete bit (atomic OR) and moves its bytes from live
    /// to dead.
    func markObsolete(recordAt offset: UInt64, length: UInt64) {
        let L = SegmentLayout.self
        let flags = mapping.base.advanced(by: Int(offset) + L.recordFlagsOffset).assumingMemoryBound(to: UInt32.self)
        let before = shmbus_fetch_or_u32(flags, L.obsoleteFlag)
        guard before & L.obsoleteFlag == 0 else { return }
        liveBytes -= min(length, liveBytes)
        deadBytes += length
        liveChunks -= min(1, liveChunks)
        mapping.storeRelease64(liveBytes, at: L.liveBytesOffset)
        mapping.storeRelease64(deadBytes, at: L.deadBytesOffset)
        mapping.storeRelease64(liveChunks, at: L.liveChunksOffset)
    }

    /// Remembers that the committed record at `offset` expires at `expiry`.
    func noteExpiry(_ expiry: UInt64, recordAt offset: UInt64, length: UInt64) {
        guard expiry != 0 else { return }
        expiring.append((expiry, offset, length))
        nextExpiry = min(nextExpiry, expiry)
    }

    /// Marks every chunk that expired by `now` obsolete: readers skip it either way,
    /// and its bytes then count as dead, so that a segment of expired chunks is
    /// collected like one of replaced chunks. (Cheap to call often: it does nothing
    /// before the earliest expiry.)
    func markExpired(now: UInt64) {
        guard now >= nextExpiry else { return }
        var later: [(expiry: UInt64, offset: UInt64, length: UInt64)] = []
        var next = UInt64.max
        for record in expiring {
            if record.expiry <= now {
                markObsolete(recordAt: record.offset, length: record.length)
            } else {
                later.append(record)
                next = min(next, record.expiry)
            }
        }
        expiring = later
        nextExpiry = next
    }

    /// Retires the segment: the successor's ID first, then the retired bit with a
    /// release store, so a reader that sees the bit sees the ID and the final commit.
    public func retire(successor: SegmentID) {
        let L = SegmentLayout.self
        guard !isRetired else { return }
        mapping.store(bytes: successor.bytes, at: L.successorIDOffset)
        mapping.storeRelease32(L.retiredFlag, at: L.stateOffset)
        isRetired = true
    }

    /// Sets the reclaimed bit (version 2, an atomic OR that leaves the retired bit),
    /// then a sequentially consistent fence: from here on a reader that has not held
    /// this generation already does not start on it, and the leases loaded after this
    /// show every reader that has (docs/FORMAT.md, "Reused memory").
    func markReclaimed() {
        let L = SegmentLayout.self
        _ = shmbus_fetch_or_u32(mapping.base.advanced(by: L.stateOffset).assumingMemoryBound(to: UInt32.self), L.reclaimedFlag)
        shmbus_fence_seq_cst()
    }

    /// A reader of this segment through the writer's own descriptor (for copying during
    /// GC and for tests).
    func reader() throws(SegmentError) -> SegmentReader {
        try SegmentReader(mapping: mapping, fileSize: Int(header.capacity))
    }
}
