import ShmBusSystem

/// A reader's lease page as a writer sees it: mapped read-only, its range read with
/// acquire loads. The reader may write anything there; the worst it can do is hold
/// every generation, which only keeps this writer from reusing memory.
final class LeasePage {
    let mapping: MemoryMapping

    /// Checks and maps a lease page a reader sent (`F_GET_SEALS`, `fstat`,
    /// `mmap(PROT_READ)`): a memfd that cannot shrink, of exactly one page, with the
    /// lease magic.
    init(_ fd: UnixFileDescriptor) throws(SegmentError) {
        let L = SegmentLayout.self
        try Memfd.checkSealed(fd, required: Memfd.leaseSeals)
        let size = try Memfd.size(of: fd)
        guard size == L.leaseSize else {
            throw SegmentError(.invalidArgument, "a lease page is \(L.leaseSize) bytes, not \(size)")
        }
        let mapping = try MemoryMapping(fd: fd, length: size, writable: false)
        guard mapping.load(L.leaseMagicOffset, as: UInt64.self) == L.leaseMagic else {
            throw SegmentError(.invalidArgument, "the lease page does not start with \"SHMBLEAS\"")
        }
        self.mapping = mapping
    }

    /// Whether the reader holds `generation` now: in a slot, or in its range.
    func holds(_ generation: UInt64) -> Bool {
        let L = SegmentLayout.self
        for slot in 0..<L.leaseSlotCount where mapping.loadAcquire64(L.leaseSlotsOffset + 8 * slot) == generation {
            return true
        }
        let low = mapping.loadAcquire64(L.leaseLowOffset)
        let high = mapping.loadAcquire64(L.leaseHighOffset)
        return low != 0 && low <= generation && generation <= high
    }
}

/// What a writer that reuses memory keeps: its readers' leases and the retired
/// segments whose memory may carry a later generation.
struct ReuseState {
    var leases: [UInt64: LeasePage] = [:]
    var nextLease: UInt64 = 1
    /// Retired segments, oldest first; at most ``ChannelWriter/reusableSegments``.
    var retired: [SegmentWriter] = []
    /// Segments being registered with a registry, by name: their memory stays theirs
    /// until the registry has read them.
    var registering: [String: Int] = [:]
    var counts = ChannelWriter.ReuseCounts()

    /// The retired segments that may be reused: all but the one retired last, which a
    /// reader a little behind may still be about to open.
    var candidates: ArraySlice<SegmentWriter> { retired.dropLast() }
}

extension ChannelWriter {
    /// Retired segments kept for reuse. With the current one, and the one retired last
    /// never reused at once, a channel that rotates steadily cycles through four
    /// segments' memory.
    public static let reusableSegments = 3
    /// Leases one writer keeps (each a page mapped); more are refused.
    public static let maximumLeases = 64

    /// How reuse went.
    public struct ReuseCounts: Sendable, Hashable {
        /// Generations that got a retired segment's memory.
        public var reused: UInt64 = 0
        /// Times a retired segment could not be reused because a lease held it.
        public var held: UInt64 = 0
    }

    /// Whether this writer reuses memory (it writes format version 2).
    public var reusesMemory: Bool { reuse != nil }

    public var reuseCounts: ReuseCounts { reuse?.counts ?? ReuseCounts() }

    /// Leases registered.
    public var leaseCount: Int { reuse?.leases.count ?? 0 }

    /// Registers a reader's lease page (``ReadLease/fileDescriptor``); returns its ID
    /// for ``removeLease(_:)``. The descriptor is only borrowed.
    public func addLease(_ fd: UnixFileDescriptor) throws(SegmentError) -> UInt64 {
        guard reuse != nil else { throw SegmentError(.invalidArgument, "this writer does not reuse memory; it needs no leases") }
        guard reuse!.leases.count < Self.maximumLeases else {
            throw SegmentError(.capacityExceeded, "this writer has \(Self.maximumLeases) leases already")
        }
        let page = try LeasePage(fd)
        let id = reuse!.nextLease
        reuse!.nextLease += 1
        reuse!.leases[id] = page
        return id
    }

    /// Forgets a lease (its reader is gone). Any generation it held may be reused.
    public func removeLease(_ id: UInt64) {
        reuse?.leases[id] = nil
    }

    /// Keeps a segment just retired for a later generation's memory, dropping the
    /// oldest kept one beyond ``reusableSegments``.
    func keepForReuse(_ segment: SegmentWriter) {
        guard reuse != nil, segment.header.isReusable, segment.capacity == capacity else { return }
        reuse!.retired.append(segment)
        if reuse!.retired.count > Self.reusableSegments { reuse!.retired.removeFirst() }
    }

    /// Memory of a retired segment that no lease holds, taken for the next generation,
    /// or nil. For each candidate, oldest first: the reclaimed bit (an atomic OR, so
    /// that from here on no reader starts on it), a sequentially consistent fence,
    /// then every lease. A held segment keeps the bit and is tried again at the next
    /// collection; its holder reads on undisturbed.
    func takeReusableMemory() -> SegmentMemory? {
        guard let state = reuse else { return nil }
        for segment in state.candidates where segment.capacity == capacity && state.registering[segment.name] == nil {
            segment.markReclaimed()
            let generation = segment.header.generation
            if state.leases.values.contains(where: { $0.holds(generation) }) {
                reuse!.counts.held += 1
                continue
            }
            reuse!.retired.removeAll { $0 === segment }
            reuse!.counts.reused += 1
            return segment.memory
        }
        return nil
    }

    /// Keeps the memory of segment `name` for its generation while a registry reads it
    /// (until ``endRegistration(of:)``), so that what is registered under a name is
    /// that segment. False when its memory carries a later generation already, or
    /// is being taken for one: then there is nothing to register. Always true for a
    /// writer that does not reuse memory.
    public func beginRegistration(of name: String) -> Bool {
        guard reuse != nil else { return true }
        let L = SegmentLayout.self
        guard let segment = (liveSegments + reuse!.retired).first(where: { $0.name == name }),
            segment.mapping.loadAcquire32(L.stateOffset) & L.reclaimedFlag == 0
        else { return false }
        reuse!.registering[name, default: 0] += 1
        return true
    }

    public func endRegistration(of name: String) {
        guard let count = reuse?.registering[name] else { return }
        reuse!.registering[name] = count > 1 ? count - 1 : nil
    }

    /// Whether the next collection will probably reuse memory (there is a candidate):
    /// then no spare is made for it.
    var mayReuseMemory: Bool { !(reuse?.candidates.isEmpty ?? true) }
}
