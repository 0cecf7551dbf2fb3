/// Many chunks, one commit: records prepared one after another past the committed end
/// and made visible together, with one set of header stores and at most one ring of
/// the doorbell. For small chunks the per-commit work (the header's five stores, the
/// doorbell's fence, the caller's announcement) is most of a publish; a batch pays it
/// once (docs/BENCHMARKS.md, "64-byte chunks").
///
/// Readers see nothing of a batch until ``commitBatch()``, then all of it: records are
/// validated one by one as always, and a commit that covers many records is what
/// garbage collection has always made.
extension ChannelWriter {
    /// The records of the open batch, all in ``current``.
    struct OpenBatch {
        /// Where the next record goes; the end of the batch once committed.
        var end: UInt64
        let firstOffset: UInt64
        let firstSequence: UInt64
        var lastSequence: UInt64
        var records: UInt64 = 0
        var bytes: UInt64 = 0
        /// One clock reading for the batch: its chunks were published together.
        let timestamp: UInt64
        /// Keyed records, in order: the older chunk of each key becomes obsolete at the
        /// commit, and a key repeated within the batch obsoletes its earlier record.
        var keyed: [(key: [UInt8], offset: UInt64, length: UInt64)] = []
        var expiring: [(expiry: UInt64, offset: UInt64, length: UInt64)] = []
    }

    /// A batch's records made visible (``commitBatch()``).
    public struct CommittedBatch: Sendable {
        public var segmentName: String
        public var generation: UInt64
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        /// The first record's start and the last one's end.
        public var recordOffset: UInt64
        public var recordEnd: UInt64
        public var records: UInt64
    }

    /// Space for one more chunk of the batch, written in place.
    public struct BatchReservation {
        public let buffer: UnsafeMutableRawBufferPointer
        /// What else happened, nil for almost every chunk. Behind one reference, a chunk
        /// that only reserved pays one null check: an optional `Rotation` and
        /// `CommittedBatch` held inline were tested and destroyed through generic value
        /// witnesses, 6% of a batch's publishing time.
        let events: Events?

        final class Events {
            let rotation: Rotation?
            let committedFirst: CommittedBatch?
            init(rotation: Rotation?, committedFirst: CommittedBatch?) {
                self.rotation = rotation
                self.committedFirst = committedFirst
            }
        }

        /// Whether ``rotation`` or ``committedFirst`` has something to handle.
        public var hasEvents: Bool { events != nil }
        /// As for ``Reservation/rotation``: register `rotation.new`, then retire.
        public var rotation: Rotation? { events?.rotation }
        /// The batch so far, committed first because this chunk did not fit beside it
        /// (or the segment was due for collection): announce it as any commit.
        public var committedFirst: CommittedBatch? { events?.committedFirst }
    }

    /// Prepares one more chunk of the open batch (opening one if none is), to be filled
    /// in place; visible with the rest at ``commitBatch()``. When the chunk does not fit
    /// the current segment beside the batch so far, that part is committed first (see
    /// ``BatchReservation/committedFirst``) and the chunk starts a new batch, after a
    /// collection if one is needed, exactly as ``reserve(length:key:expiresAt:attributes:)`` does.
    public func reserveInBatch(
        length: UInt64, key: String = "", expiresAt: UInt64 = 0, attributes: ChunkAttributes = ChunkAttributes()
    ) throws(SegmentError) -> BatchReservation {
        guard reservation == nil else {
            throw SegmentError(.invalidArgument, "a reservation is open; commit or abandon it before a batch")
        }
        let (keyBytes, block, layout) = try recordLayout(length: length, key: key, attributes: attributes)
        var committedFirst: CommittedBatch?
        // `batch!`, not `if let`: a copy of the open batch retains its arrays.
        if batch != nil, layout.length > current.capacity - batch!.end { committedFirst = commitBatch() }
        var rotation: Rotation?
        if batch == nil {
            let timestamp = RealtimeClock.now()
            if layout.length > current.freeBytes || shouldCollect(now: timestamp) {
                do {
                    rotation = try collectGarbage(making: layout.length)
                } catch {
                    // The part committed above is visible to readers: it must still be
                    // announced (``takeUnannouncedBatch()``).
                    unannouncedBatch = committedFirst
                    throw error
                }
            }
            batch = OpenBatch(
                end: current.committedEnd, firstOffset: current.committedEnd, firstSequence: lastSequence + 1,
                lastSequence: lastSequence, timestamp: timestamp)
        }
        // The open batch is read and changed in place (`batch!`): a copy of it would
        // retain and release its arrays for every chunk.
        let sequence = batch!.lastSequence + 1
        let prepared = keyBytes.withUnsafeBytes { key in
            block.withUnsafeBytes { block in
                current.prepare(
                    at: batch!.end, sequence: sequence, key: key, attributes: block, payloadLength: length, timestamp: batch!.timestamp,
                    expiry: expiresAt)
            }
        }
        guard let prepared else {
            // Only a batch just opened can get here (an open one was committed above if
            // the chunk did not fit), and it is empty: nothing to commit.
            batch = nil
            unannouncedBatch = committedFirst
            throw SegmentError(.capacityExceeded, "no room for \(layout.length) bytes after garbage collection")
        }
        batch!.end += prepared.length
        batch!.lastSequence = sequence
        batch!.records += 1
        batch!.bytes += prepared.length
        if !keyBytes.isEmpty { batch!.keyed.append((keyBytes, prepared.recordOffset, prepared.length)) }
        if expiresAt != 0 { batch!.expiring.append((expiresAt, prepared.recordOffset, prepared.length)) }
        let events = rotation == nil && committedFirst == nil ? nil : BatchReservation.Events(rotation: rotation, committedFirst: committedFirst)
        return BatchReservation(buffer: prepared.payload, events: events)
    }

    /// The part of a batch that ``reserveInBatch(length:key:expiresAt:attributes:)`` committed
    /// before it failed, once: the caller announces it as any commit.
    public func takeUnannouncedBatch() -> CommittedBatch? {
        defer { unannouncedBatch = nil }
        return unannouncedBatch
    }

    /// The sequence of the last chunk reserved in the open batch (the last assigned
    /// when none is open).
    public var batchLastSequence: UInt64 { batch?.lastSequence ?? lastSequence }

    /// Makes the open batch visible: one commit of all its records, their keys' older
    /// chunks marked obsolete, and one ring. Nil when no batch is open.
    @discardableResult
    public func commitBatch() -> CommittedBatch? {
        guard let open = batch else { return nil }
        batch = nil
        guard open.records > 0 else { return nil }
        current.commit(end: open.end, sequence: open.lastSequence, records: open.records, bytes: open.bytes)
        for record in open.expiring { current.noteExpiry(record.expiry, recordAt: record.offset, length: record.length) }
        lastSequence = open.lastSequence
        for record in open.keyed {
            if let previous = keyIndex[record.key] { current.markObsolete(recordAt: previous.offset, length: previous.length) }
            keyIndex[record.key] = (record.offset, record.length)
        }
        doorbell.ring(&ringPacing)
        if open.end >= prefaultState.nextRequestAt { prefaultAhead() }
        return CommittedBatch(
            segmentName: current.name, generation: current.header.generation, firstSequence: open.firstSequence,
            lastSequence: open.lastSequence, recordOffset: open.firstOffset, recordEnd: open.end, records: open.records)
    }
}
