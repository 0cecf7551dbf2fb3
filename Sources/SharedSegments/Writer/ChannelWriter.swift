import CShmBusLinux

/// The single writer of a channel: appends chunks to the current segment, marks
/// older chunks of the same key obsolete, and moves to a new generation (garbage
/// collection) when the segment is full or mostly dead.
///
/// Sequences are per channel and strictly increasing across generations. After
/// garbage collection the old segment stays un-retired until the caller calls
/// ``retire(_:)``: a publisher first registers the new segment with the registry,
/// then retires the old one, so readers never look for a successor that nobody can
/// open yet. A writer that has no registry retires at once.
///
/// Not thread-safe: one owner (``Publisher`` keeps it behind a mutex).
public final class ChannelWriter {
    public let channel: String
    /// The segment appends go to.
    // Exclusivity is checked statically: the writer is confined to one owner (see the
    // type's documentation), and dynamic checks cost a tenth of a small publish.
    @exclusivity(unchecked) public internal(set) var current: SegmentWriter
    /// The doorbell readers wait on; rung only when some reader may sleep.
    public let doorbell: Doorbell
    /// How often the doorbell may ring for nobody (see ``RingPacing``).
    @exclusivity(unchecked) var ringPacing = RingPacing()
    @exclusivity(unchecked) public var policy: GarbageCollectionPolicy
    /// Capacity of new generations.
    @exclusivity(unchecked) public var capacity: UInt64
    /// Whether new generations ask for transparent huge pages (see
    /// ``SegmentWriter/init(channel:capacity:generation:baseSequence:hugePages:)``).
    public let hugePages: Bool
    /// The last sequence assigned.
    @exclusivity(unchecked) public internal(set) var lastSequence: UInt64
    /// Where the live chunk of each key is in ``current``.
    @exclusivity(unchecked) var keyIndex: [[UInt8]: (offset: UInt64, length: UInt64)] = [:]
    /// Rotations whose old segment is not retired yet, oldest first.
    @exclusivity(unchecked) public private(set) var unretired: [Rotation] = []

    /// The segments readers may still need: the current one and every one not retired
    /// yet (a rotation's old segment, and its new one if a later rotation replaced it).
    public var liveSegments: [SegmentWriter] {
        var segments = [current]
        for rotation in unretired {
            for segment in [rotation.old, rotation.new] where !segments.contains(where: { $0 === segment }) {
                segments.append(segment)
            }
        }
        return segments
    }
    /// Faulting memory in ahead of this writer (ChannelWriter+Prefault.swift); nil: off.
    public var prefault: PrefaultPlan? {
        didSet { prefaultAhead() }
    }
    @exclusivity(unchecked) var prefaultState = PrefaultState()
    @exclusivity(unchecked) var reservation: (token: UInt64, offset: UInt64, length: UInt64, payloadOffset: UInt64, sequence: UInt64, key: [UInt8], expiry: UInt64)?
    /// Records prepared for one commit (ChannelWriter+Batch.swift).
    @exclusivity(unchecked) var batch: OpenBatch?
    /// A part of a batch committed before a failure, not announced yet.
    @exclusivity(unchecked) var unannouncedBatch: CommittedBatch?
    @exclusivity(unchecked) private var nextToken: UInt64 = 1
    /// Leases and retired segments of a writer that reuses memory; nil for one that
    /// does not (ChannelWriter+Reuse.swift).
    @exclusivity(unchecked) var reuse: ReuseState?

    /// Creates the channel's first segment (generation 1).
    ///
    /// - Parameter reusesMemory: give retired segments' memory to later generations
    ///   once no reader's lease holds them (format version 2; readers need a
    ///   ``ReadLease`` and register it with ``addLease(_:)``). A channel that rotates
    ///   steadily then cycles through four segments' memory that its readers have
    ///   mapped already, instead of new memory each time.
    public convenience init(
        channel: String, capacity: UInt64, policy: GarbageCollectionPolicy = .default, firstSequence: UInt64 = 1,
        hugePages: Bool = false, reusesMemory: Bool = false
    ) throws(SegmentError) {
        try self.init(
            channel: channel, capacity: capacity, firstCapacity: capacity, policy: policy, lastSequence: firstSequence - 1,
            generation: 1, hugePages: hugePages, reusesMemory: reusesMemory)
    }

    /// Creates a first segment of `firstCapacity` bytes and generation `generation`;
    /// later generations get `capacity`.
    init(
        channel: String, capacity: UInt64, firstCapacity: UInt64, policy: GarbageCollectionPolicy, lastSequence: UInt64,
        generation: UInt64, hugePages: Bool, reusesMemory: Bool
    ) throws(SegmentError) {
        self.channel = channel
        self.capacity = try Self.roundedCapacity(capacity)
        self.policy = policy
        self.hugePages = hugePages
        self.lastSequence = lastSequence
        current = try SegmentWriter(
            channel: channel, generation: generation, baseSequence: lastSequence, memory: nil,
            capacity: try Self.roundedCapacity(firstCapacity), hugePages: hugePages, reusable: reusesMemory)
        doorbell = try Doorbell.create()
        reuse = reusesMemory ? ReuseState() : nil
    }

    static func roundedCapacity(_ capacity: UInt64) throws(SegmentError) -> UInt64 {
        let L = SegmentLayout.self
        guard let rounded = L.alignUp(max(capacity, UInt64(L.headerSize + L.pageSize)), L.pageSize) else {
            throw SegmentError(.invalidArgument, "capacity \(capacity) is too large")
        }
        return rounded
    }

    /// The largest payload a segment of this writer's capacity takes with an empty key.
    public var maximumPayload: UInt64 {
        current.capacity - UInt64(SegmentLayout.headerSize) - UInt64(SegmentLayout.recordHeaderSize)
    }

    // MARK: Appending

    /// Where a chunk landed.
    public struct Appended {
        public var segment: SegmentID
        /// The segment's name (`segment` in hex).
        public var segmentName: String
        public var generation: UInt64
        public var sequence: UInt64
        /// The record's byte range in the segment.
        public var recordOffset: UInt64
        public var recordEnd: UInt64
        /// The payload's byte offset in the segment and its length.
        public var payloadOffset: UInt64
        public var length: UInt64
        /// The collection this append caused, if any: register `rotation.new`, then
        /// call ``retire(_:)``.
        public var rotation: Rotation?
    }

    /// Copies `bytes` into a new chunk and commits it.
    @discardableResult
    public func append(
        _ bytes: UnsafeRawBufferPointer, key: String = "", expiresAt: UInt64 = 0, attributes: ChunkAttributes = ChunkAttributes()
    ) throws(SegmentError) -> Appended {
        let reserved = try reserve(length: UInt64(bytes.count), key: key, expiresAt: expiresAt, attributes: attributes)
        if bytes.count > 0 { reserved.buffer.copyMemory(from: bytes) }
        return try commit(reserved)
    }

    /// Space for a chunk, written in place.
    public struct Reservation {
        public let buffer: UnsafeMutableRawBufferPointer
        let token: UInt64
        /// A collection that was needed to make room, already done: register
        /// `rotation.new`, then ``ChannelWriter/retire(_:)``, whether or not the
        /// reservation is committed.
        public let rotation: Rotation?
    }

    /// Reserves a chunk of `length` bytes past the committed end; fill
    /// `reservation.buffer`, then ``commit(_:)``. Readers see nothing until then. One
    /// reservation at a time. `attributes` are checked as a reader checks them (an array
    /// or image must fit `length`) and written with the record.
    ///
    /// `origin` is for a writer that copies another host's channel (the JetStream
    /// bridge): the chunk keeps that channel's sequence, which must be above this
    /// writer's last (the sequences skipped are a gap to readers, as they were there),
    /// and its timestamp.
    public func reserve(
        length: UInt64, key: String = "", expiresAt: UInt64 = 0, attributes: ChunkAttributes = ChunkAttributes(),
        origin: (sequence: UInt64, timestamp: UInt64)? = nil
    ) throws(SegmentError) -> Reservation {
        guard reservation == nil, batch == nil else {
            throw SegmentError(.invalidArgument, "a reservation or a batch is already open; commit or abandon it first")
        }
        if let origin, origin.sequence <= lastSequence {
            throw SegmentError(
                .invalidArgument, "sequence \(origin.sequence) is not above the channel's last sequence \(lastSequence)")
        }
        let (keyBytes, block, layout) = try recordLayout(length: length, key: key, attributes: attributes)
        var rotation: Rotation?
        let now = RealtimeClock.now()
        if layout.length > current.freeBytes || shouldCollect(now: now) {
            rotation = try collectGarbage(making: layout.length)
        }
        let sequence = origin?.sequence ?? lastSequence + 1
        let timestamp = origin?.timestamp ?? now
        let prepared = keyBytes.withUnsafeBytes { key in
            block.withUnsafeBytes { block in
                current.prepare(sequence: sequence, key: key, attributes: block, payloadLength: length, timestamp: timestamp, expiry: expiresAt)
            }
        }
        guard let prepared else {
            throw SegmentError(.capacityExceeded, "no room for \(layout.length) bytes after garbage collection")
        }
        let token = nextToken
        nextToken += 1
        reservation = (
            token, prepared.recordOffset, prepared.length, prepared.recordOffset + layout.payloadOffset, sequence, keyBytes,
            expiresAt
        )
        return Reservation(buffer: prepared.payload, token: token, rotation: rotation)
    }

    /// The key's bytes, the attributes block and the record's layout for a chunk of
    /// `length` bytes, checked against the key limit, the attributes' rules and this
    /// writer's capacity (any of them is refused before anything is written).
    func recordLayout(
        length: UInt64, key: String, attributes: ChunkAttributes
    ) throws(SegmentError) -> (key: [UInt8], block: [UInt8], layout: (payloadOffset: UInt64, length: UInt64)) {
        // No array for the empty key, the common case of a flood of small chunks.
        let keyBytes = key.isEmpty ? [] : Array(key.utf8)
        guard keyBytes.count <= SegmentLayout.maximumKeyLength else {
            throw SegmentError(.invalidArgument, "key is \(keyBytes.count) bytes; the limit is \(SegmentLayout.maximumKeyLength)")
        }
        let block = try attributes.encodedBlock(payloadLength: length)
        guard let layout = RecordHeader.layout(keyLength: keyBytes.count, attributesLength: block.count, payloadLength: length),
            layout.length <= capacity - UInt64(SegmentLayout.headerSize)
        else {
            throw SegmentError(
                .capacityExceeded,
                "a chunk of \(length) bytes does not fit a segment of \(capacity) bytes (at most \(maximumPayload) with an empty key); use a larger capacity")
        }
        return (keyBytes, block, layout)
    }

    /// Commits a reservation: the chunk becomes visible, an older chunk with the same
    /// key becomes obsolete, and waiting readers are woken.
    @discardableResult
    public func commit(_ reserved: Reservation) throws(SegmentError) -> Appended {
        guard let open = reservation, open.token == reserved.token else {
            throw SegmentError(.invalidArgument, "this reservation is not the open one (committed or abandoned already?)")
        }
        reservation = nil
        let end = open.offset + open.length
        current.commit(end: end, sequence: open.sequence, bytes: open.length)
        current.noteExpiry(open.expiry, recordAt: open.offset, length: open.length)
        lastSequence = open.sequence
        if !open.key.isEmpty {
            if let previous = keyIndex[open.key] {
                current.markObsolete(recordAt: previous.offset, length: previous.length)
            }
            keyIndex[open.key] = (open.offset, open.length)
        }
        doorbell.ring(&ringPacing)
        if end >= prefaultState.nextRequestAt { prefaultAhead() }
        return Appended(
            segment: current.id, segmentName: current.name, generation: current.header.generation, sequence: open.sequence, recordOffset: open.offset,
            recordEnd: end, payloadOffset: open.payloadOffset, length: UInt64(reserved.buffer.count), rotation: reserved.rotation)
    }

    /// Drops the open reservation; its bytes are never committed.
    public func abandon(_ reserved: Reservation) {
        if reservation?.token == reserved.token { reservation = nil }
    }

    func shouldCollect(now: UInt64) -> Bool {
        guard policy.deadRatio < 1 else { return false }
        current.markExpired(now: now)
        let area = Double(current.capacity - UInt64(SegmentLayout.headerSize))
        return Double(current.deadBytes) >= policy.deadRatio * area
    }

    // MARK: Garbage collection

    /// A move to a new generation.
    public struct Rotation {
        /// The segment replaced; still un-retired until ``ChannelWriter/retire(_:)``.
        public let old: SegmentWriter
        /// The segment appends go to now.
        public let new: SegmentWriter
        /// Live chunks copied into the new generation.
        public let copiedChunks: Int
        /// Live chunks dropped because they exceeded the retention budget.
        public let droppedChunks: Int
    }

    /// Collects garbage now (the manual trigger).
    @discardableResult
    public func collectGarbage() throws(SegmentError) -> Rotation {
        guard reservation == nil, batch == nil else {
            throw SegmentError(.invalidArgument, "cannot collect garbage while a reservation or a batch is open")
        }
        return try collectGarbage(making: 0)
    }

    /// Copies the live chunks (newest first, up to the retention budget) into
    /// generation + 1 and makes it current. `room` bytes must be free afterwards.
    func collectGarbage(making room: UInt64) throws(SegmentError) -> Rotation {
        let L = SegmentLayout.self
        let old = current
        let area = capacity - UInt64(L.headerSize)
        let budget = min(UInt64(policy.retainRatio * Double(area)), area - min(room, area))

        // Live records of the old segment, in order: the writer's own, trusted layout.
        // Offsets and lengths only: a full segment of small chunks holds millions of
        // records, and a key array for each (most of them dropped below) was a tenth of
        // a small-chunk flood's publishing time.
        var live: [(offset: UInt64, length: UInt64)] = []
        live.reserveCapacity(Int(min(old.liveChunks, 1 << 22)))
        var offset = UInt64(L.headerSize)
        let now = RealtimeClock.now()
        while offset < old.committedEnd {
            let length = old.mapping.load(Int(offset) + L.recordLengthOffset, as: UInt64.self)
            let flags = RecordHeader.flags(in: old.mapping, at: offset)
            let expiry = old.mapping.load(Int(offset) + L.recordExpiryOffset, as: UInt64.self)
            if flags & L.obsoleteFlag == 0, expiry == 0 || expiry > now { live.append((offset, length)) }
            offset += length
        }
        var kept = 0
        var total: UInt64 = 0
        for record in live.reversed() {
            guard total + record.length <= budget else { break }
            total += record.length
            kept += 1
        }
        let copied = live.suffix(kept)

        let new = try SegmentWriter(
            channel: channel, generation: old.header.generation + 1, baseSequence: lastSequence,
            memory: takeReusableMemory() ?? takeSpareMemory(), capacity: capacity, hugePages: hugePages, reusable: reusesMemory)
        var newIndex: [[UInt8]: (offset: UInt64, length: UInt64)] = [:]
        var end = UInt64(L.headerSize)
        for record in copied {
            new.mapping.base.advanced(by: Int(end)).copyMemory(
                from: old.mapping.base.advanced(by: Int(record.offset)), byteCount: Int(record.length))
            // A copied record is live: clear any flag (its checksum does not cover flags).
            new.mapping.store(UInt32(0), at: Int(end) + L.recordFlagsOffset)
            let sequence = new.mapping.load(Int(end) + L.recordSequenceOffset, as: UInt64.self)
            let expiry = new.mapping.load(Int(end) + L.recordExpiryOffset, as: UInt64.self)
            end += record.length
            new.commit(end: end, sequence: sequence, bytes: record.length)
            new.noteExpiry(expiry, recordAt: end - record.length, length: record.length)
            let keyLength = Int(new.mapping.load(Int(end - record.length) + L.recordKeyLengthOffset, as: UInt16.self))
            if keyLength > 0 {
                newIndex[new.mapping.bytes(Int(end - record.length) + L.recordKeyOffset, keyLength)] = (end - record.length, record.length)
            }
        }
        // The new segment's last sequence is the channel's, even if the newest chunks
        // were obsolete and not copied.
        new.mapping.storeRelease64(lastSequence, at: L.lastSequenceOffset)
        current = new
        keyIndex = newIndex
        prefaultState.currentChanged()
        prefaultAhead(making: room)
        let rotation = Rotation(old: old, new: new, copiedChunks: copied.count, droppedChunks: live.count - copied.count)
        unretired.append(rotation)
        return rotation
    }

    /// Retires the old segment of a rotation, naming its successor.
    public func retire(_ rotation: Rotation) {
        rotation.old.retire(successor: rotation.new.id)
        unretired.removeAll { $0.old === rotation.old }
        keepForReuse(rotation.old)
        doorbell.ringAlways(&ringPacing)
    }

    /// Retires the segment `old` if a rotation left it un-retired; returns whether it did.
    @discardableResult
    public func retire(segment old: SegmentID) -> Bool {
        guard let rotation = unretired.first(where: { $0.old.id == old }) else { return false }
        retire(rotation)
        return true
    }
}
