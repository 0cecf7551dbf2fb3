import Locking
import ShmBusSystem

/// A read-only view of one segment, for readers in any process.
///
/// The segment is untrusted: its writer may rewrite it at any time, even after
/// sealing. The reader maps it read-only, validates the header once, and validates
/// every record it touches from a private copy of the record's header, so whatever
/// the bytes, it returns errors or valid chunks, never traps and never reads outside
/// the mapping.
public final class SegmentReader: Sendable {
    /// What a reader accepts.
    public struct Options: Sendable {
        /// Refuse a descriptor that is not a memfd with all four segment seals (the
        /// default). Turning it off is for tests and tools reading copies.
        public var requireSeals = true
        /// Open a segment whose memory is reused (version 2) without a lease. Only for
        /// what reads the header and the counters (the registry, `shmbus stat`): the
        /// records of such a segment may be rewritten for a later generation at any
        /// time.
        public var withoutLease = false
        public init(requireSeals: Bool = true, withoutLease: Bool = false) {
            self.requireSeals = requireSeals
            self.withoutLease = withoutLease
        }

        /// For the registry and tools: seals required, no lease needed.
        public static let headersOnly = Options(withoutLease: true)
    }

    public let header: SegmentHeader
    public let mapping: MemoryMapping
    /// The generation held on the reader's lease while this reader (or a chunk read
    /// through it) lives; nil for a segment whose memory is never reused.
    public let hold: LeaseHold?
    /// Where the newest live chunk of each key was found, and how far the index has scanned.
    private let index = Lock(KeyIndex())

    private struct KeyIndex {
        var scanned = UInt64(SegmentLayout.headerSize)
        var latest: [[UInt8]: UInt64] = [:]
    }

    /// Validates and maps `fd` read-only (`fstat`, `F_GET_SEALS`, `mmap(PROT_READ)`).
    /// The descriptor is only borrowed (the caller may close it); the mapping outlives it.
    ///
    /// A segment whose memory is reused (version 2) needs `lease`: the reader holds
    /// the segment's generation on it first, and throws ``SegmentError/Kind/reclaimed``
    /// when the writer has asked for the memory back already or given it to a later
    /// generation. The lease also lends a mapping it made earlier of the same memfd.
    /// `writer` names who handed `fd` out (a publisher's bus name): the lease offers
    /// the mapping as a successor (``reused(_:lease:writer:)``) only for that writer.
    public init(fd: UnixFileDescriptor, options: Options = Options(), lease: ReadLease? = nil, writer: String = "") throws(SegmentError) {
        if options.requireSeals {
            try Memfd.checkSealed(fd, required: Memfd.segmentSeals)
        }
        let size = try Memfd.size(of: fd)
        guard size >= SegmentLayout.headerSize + SegmentLayout.pageSize else {
            throw SegmentError(.tooSmall, "the file is \(size) bytes; a segment takes at least \(SegmentLayout.headerSize + SegmentLayout.pageSize)")
        }
        let mapping: MemoryMapping
        if let lease {
            mapping = try lease.mapping(of: fd, size: size, writer: writer)
        } else {
            mapping = try MemoryMapping(fd: fd, length: size, writable: false)
        }
        let header = try SegmentHeader.read(from: mapping, fileSize: size)
        hold = try Self.admit(header, in: mapping, fileSize: size, lease: lease, options: options)
        self.header = header
        self.mapping = mapping
    }

    /// A reader of segment `id` in memory `lease` mapped earlier, if one of its cached
    /// mappings holds that segment now: a writer that reuses memory names the
    /// successor of a retired segment, and readers that kept the memory it reused
    /// find it there without asking anyone for a descriptor. Only memory `writer`
    /// handed out is looked at: an earlier writer of the channel, still running, could
    /// write any ID into its own. Nil when none has it (or the memory went on to yet
    /// another generation meanwhile).
    public static func reused(_ id: SegmentID, lease: ReadLease, writer: String) -> SegmentReader? {
        for mapping in lease.cached(from: writer).reversed() {
            guard let header = try? SegmentHeader.read(from: mapping, fileSize: mapping.length), header.id == id, header.isReusable
            else { continue }
            return try? SegmentReader(mapping: mapping, header: header, lease: lease)
        }
        return nil
    }

    private init(mapping: MemoryMapping, header: SegmentHeader, lease: ReadLease) throws(SegmentError) {
        hold = try Self.admit(header, in: mapping, fileSize: mapping.length, lease: lease, options: Options())
        self.header = header
        self.mapping = mapping
    }

    /// A reader over an existing mapping (the writer's own, or a test's buffer).
    init(mapping: MemoryMapping, fileSize: Int) throws(SegmentError) {
        header = try SegmentHeader.read(from: mapping, fileSize: fileSize)
        self.mapping = mapping
        hold = nil
    }

    /// The hold a reader of `header` needs: none for version 1; for version 2 one on
    /// `lease`, taken before the state word and the header are looked at again, so
    /// that the writer either sees the hold or the reader sees the memory going.
    private static func admit(
        _ header: SegmentHeader, in mapping: MemoryMapping, fileSize: Int, lease: ReadLease?, options: Options
    ) throws(SegmentError) -> LeaseHold? {
        guard header.isReusable else { return nil }
        // 0 is a lease page's "free slot": no generation to hold.
        guard header.generation > 0 else { throw .badHeader("a segment whose memory is reused has generation 0") }
        guard let lease else {
            if options.withoutLease { return nil }
            throw SegmentError(
                .leaseRequired, "segment \(header.name) (generation \(header.generation)) reuses its memory: read it with a lease")
        }
        let hold = lease.hold(header.generation)
        let L = SegmentLayout.self
        let state = mapping.loadAcquire32(L.stateOffset)
        // The same generation still? (The memory may have gone to another between the
        // first look and the hold.)
        let again = try? SegmentHeader.read(from: mapping, fileSize: fileSize)
        guard state & L.reclaimedFlag == 0, again == header else {
            throw SegmentError(
                .reclaimed, "segment \(header.name) (generation \(header.generation)): its writer has taken the memory back for a later generation")
        }
        return hold
    }

    public var id: SegmentID { header.id }
    public var name: String { header.id.name }

    /// The mutable header fields now (acquire loads), validated.
    public func liveState() throws(SegmentError) -> SegmentLiveState {
        let L = SegmentLayout.self
        // The state word first: once the retired bit is seen, the final commit word and
        // the successor are visible too.
        let state = mapping.loadAcquire32(L.stateOffset)
        let committedEnd = mapping.loadAcquire64(L.committedEndOffset)
        guard committedEnd >= UInt64(L.headerSize), committedEnd <= header.capacity, committedEnd % UInt64(L.alignment) == 0 else {
            throw .badHeader("committed end \(committedEnd) is outside [\(L.headerSize), \(header.capacity)] or unaligned")
        }
        var successor: SegmentID?
        let retired = state & L.retiredFlag != 0
        if retired {
            let id = SegmentID(unchecked: mapping.bytes(L.successorIDOffset, 16))
            guard !id.isZero, id != header.id else { throw .badHeader("retired without a valid successor ID") }
            successor = id
        }
        return SegmentLiveState(
            committedEnd: committedEnd, lastSequence: mapping.loadAcquire64(L.lastSequenceOffset),
            recordCount: mapping.loadAcquire64(L.recordCountOffset), liveBytes: mapping.loadAcquire64(L.liveBytesOffset),
            deadBytes: mapping.loadAcquire64(L.deadBytesOffset), liveChunks: mapping.loadAcquire64(L.liveChunksOffset),
            isRetired: retired, isReclaimed: state & L.reclaimedFlag != 0, successor: successor)
    }

    /// The chunk whose record starts at `offset`, validated against `limit` (a
    /// committed end loaded by the caller).
    public func chunk(at offset: UInt64, limit: UInt64) throws(SegmentError) -> Chunk {
        let record = try RecordHeader.read(from: mapping, at: offset, limit: limit)
        let keyString: String
        if record.key.isEmpty {
            keyString = ""
        } else if let valid = String(validating: record.key, as: UTF8.self) {
            keyString = valid
        } else {
            throw .badRecord(at: offset, "key is not UTF-8")
        }
        var attributes = ChunkAttributes()
        if record.attributesLength > 0 {
            // Decoded from a private copy: the writer may rewrite the block meanwhile.
            let copy = Array(UnsafeRawBufferPointer(
                start: mapping.base.advanced(by: Int(offset) + record.attributesOffset), count: record.attributesLength))
            switch copy.withUnsafeBytes({ ChunkAttributes.decode(block: $0, payloadLength: record.payloadLength) }) {
            case .success(let decoded): attributes = decoded
            case .failure(let problem): throw .badRecord(at: offset, "attributes: \(problem.message)")
            }
        }
        return Chunk(
            record: record, key: keyString, attributes: attributes, segment: header.id, generation: header.generation, mapping: mapping,
            hold: hold)
    }

    /// Every committed chunk in order, obsolete and expired ones included (see
    /// ``Chunk/isLive(at:)``). Stops at the first invalid record by throwing.
    public func allChunks() throws(SegmentError) -> [Chunk] {
        let limit = try liveState().committedEnd
        var out: [Chunk] = []
        var offset = UInt64(SegmentLayout.headerSize)
        while offset < limit {
            let chunk = try chunk(at: offset, limit: limit)
            out.append(chunk)
            offset = chunk.recordEnd
        }
        return out
    }

    /// The newest live (not obsolete, not expired) chunk with `key`, or nil. Scans only
    /// what was committed since the previous call.
    public func latest(key: String) throws(SegmentError) -> Chunk? {
        let wanted = Array(key.utf8)
        let limit = try liveState().committedEnd
        return try index.withLock { (index) throws(SegmentError) -> Chunk? in
            while index.scanned < limit {
                let record = try RecordHeader.read(from: mapping, at: index.scanned, limit: limit)
                index.latest[record.key] = record.offset
                index.scanned = record.end
            }
            guard let offset = index.latest[wanted] else { return nil }
            let found = try chunk(at: offset, limit: limit)
            return found.isLive(at: RealtimeClock.now()) ? found : nil
        }
    }
}
