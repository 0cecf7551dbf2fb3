import CShmBusLinux
import Glibc
import Locking
import ShmBusSystem

/// A reader's lease: the one-page memfd in which it tells writers which generations it
/// holds, so that a writer that reuses memory (format version 2) never gives memory
/// to a later generation while this reader can still read the one in it
/// (docs/FORMAT.md, "Reused memory").
///
/// The reader alone writes the page; each writer it reads from gets the descriptor
/// once (a publisher through `Publisher1.Lease`) and maps it read-only. The page
/// names every generation a live ``SegmentReader`` of this lease holds: the first
/// eight in slots of their own, any more in a range `[low, high]` (which holds the
/// generations between as well). A hold is taken when a reader of a version-2 segment
/// is made and released when the last chunk that needs it is gone.
///
/// The handshake is Dekker's: the reader stores its hold (a slot, or the range), makes
/// a sequentially consistent fence and then loads the segment's state word; the writer
/// sets the reclaimed bit with an atomic OR, fences, and then loads every lease page. At
/// least one of them sees the other's store: either the writer sees the hold and
/// keeps the memory, or the reader sees the bit and does not read.
///
/// It also keeps the last few mappings it made, by file identity: a segment whose
/// memory is reused arrives as a new descriptor of the same memfd, and mapping it
/// again would make the reader fill its page tables again, which is what reuse saves.
public final class ReadLease: Sendable {
    /// The page's descriptor (read-write; lend it to writers, who map it read-only).
    public let fileDescriptor: UnixFileDescriptor
    let page: MemoryMapping
    private let state = Lock(State())
    /// What must live as long as the lease: the connection through which a writer
    /// got it, which forgets the lease when that connection leaves the bus.
    private let anchor: (any AnyObject & Sendable)?

    /// How many mappings stay cached for segments to come back in: the four a
    /// steadily rotating writer cycles through, and one more a kept chunk may pin.
    public static let cachedMappings = 5

    private struct State {
        /// Holds per generation.
        var held: [UInt64: Int] = [:]
        /// What each slot of the page says (0: free).
        var slots = [UInt64](repeating: 0, count: SegmentLayout.leaseSlotCount)
        /// Generations held beyond the slots, which the range covers.
        var overflow: Set<UInt64> = []
        var low: UInt64 = 0
        var high: UInt64 = 0
        /// Most recently used last, with the writer that handed each out.
        var mappings: [(file: FileIdentity, mapping: MemoryMapping, writer: String)] = []
    }

    struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int
    }

    /// A new lease page (`memfd_create`, `ftruncate(4096)`, `mmap`, then
    /// `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`: a writer that maps it can never be
    /// made to fault on a shrunk file).
    ///
    /// - Parameter anchor: kept alive with the lease (and so with every chunk read
    ///   through it): the bus connection that registered the page, when its leaving
    ///   would end the lease.
    public init(keeping anchor: (any AnyObject & Sendable)? = nil) throws(SegmentError) {
        self.anchor = anchor
        let L = SegmentLayout.self
        let fd = try Memfd.create(name: "shmbus-lease", size: L.leaseSize)
        page = try MemoryMapping(fd: fd, length: L.leaseSize, writable: true)
        page.store(L.leaseMagic, at: L.leaseMagicOffset)
        try Memfd.addSeals(Memfd.leaseSeals, to: fd)
        fileDescriptor = fd
    }

    /// The generations the page names now, slots and range (for tests).
    public var heldGenerations: Set<UInt64> {
        let L = SegmentLayout.self
        var held = Set((0..<L.leaseSlotCount).map { page.loadAcquire64(L.leaseSlotsOffset + 8 * $0) }.filter { $0 != 0 })
        let low = page.loadAcquire64(L.leaseLowOffset)
        let high = page.loadAcquire64(L.leaseHighOffset)
        if low != 0, high >= low { held.formUnion(low...high) }
        return held
    }

    /// Holds `generation` until the hold returned is released, then fences: the
    /// caller looks at the segment's state word only after this returns.
    func hold(_ generation: UInt64) -> LeaseHold {
        state.withLock { state in
            state.held[generation, default: 0] += 1
            guard state.held[generation] == 1 else { return }
            if let free = state.slots.firstIndex(of: 0) {
                state.slots[free] = generation
                store(generation, slot: free)
            } else {
                state.overflow.insert(generation)
                publishRange(&state)
            }
        }
        shmbus_fence_seq_cst()
        return LeaseHold(lease: self, generation: generation)
    }

    fileprivate func release(_ generation: UInt64) {
        state.withLock { state in
            guard let count = state.held[generation] else { return }
            guard count == 1 else {
                state.held[generation] = count - 1
                return
            }
            state.held[generation] = nil
            if let slot = state.slots.firstIndex(of: generation) {
                state.slots[slot] = 0
                store(0, slot: slot)
            } else {
                state.overflow.remove(generation)
                publishRange(&state)
            }
        }
    }

    private func store(_ generation: UInt64, slot: Int) {
        let L = SegmentLayout.self
        shmbus_store_release_u64(page.base.advanced(by: L.leaseSlotsOffset + 8 * slot).assumingMemoryBound(to: UInt64.self), generation)
    }

    /// Stores the range of `state.overflow` into the page: widening stores first, then
    /// narrowing ones, so that every range a writer can see on the way covers every
    /// generation held both before and after. A hold or a release changes the range in
    /// one direction only.
    private func publishRange(_ state: inout State) {
        let L = SegmentLayout.self
        let newLow = state.overflow.min() ?? 0
        let newHigh = state.overflow.max() ?? 0
        let low = page.base.advanced(by: L.leaseLowOffset).assumingMemoryBound(to: UInt64.self)
        let high = page.base.advanced(by: L.leaseHighOffset).assumingMemoryBound(to: UInt64.self)
        if state.low == 0 {
            // From nothing: the high end first; [0, high] holds nothing yet.
            shmbus_store_release_u64(high, newHigh)
            shmbus_store_release_u64(low, newLow)
        } else if newLow == 0 {
            shmbus_store_release_u64(low, 0)
            shmbus_store_release_u64(high, 0)
        } else {
            if newLow < state.low { shmbus_store_release_u64(low, newLow) }
            if newHigh > state.high { shmbus_store_release_u64(high, newHigh) }
            if newLow > state.low { shmbus_store_release_u64(low, newLow) }
            if newHigh < state.high { shmbus_store_release_u64(high, newHigh) }
        }
        state.low = newLow
        state.high = newHigh
    }

    /// A read-only mapping of the whole of `fd`: one made earlier for the same file
    /// (same device, inode and size) if this lease still has it, else a new one
    /// (`fstat`, `mmap(PROT_READ)`), kept for next time as `writer`'s.
    func mapping(of fd: UnixFileDescriptor, size: Int, writer: String) throws(SegmentError) -> MemoryMapping {
        let info: stat
        do throws(SystemError) { info = try fd.status() } catch { throw SegmentError(error) }
        let file = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: size)
        if let cached = state.withLock({ state -> MemoryMapping? in
            guard let index = state.mappings.firstIndex(where: { $0.file == file }) else { return nil }
            var entry = state.mappings.remove(at: index)
            entry.writer = writer
            state.mappings.append(entry)
            return entry.mapping
        }) {
            return cached
        }
        let mapping = try MemoryMapping(fd: fd, length: size, writable: false)
        state.withLock { state in
            state.mappings.append((file, mapping, writer))
            if state.mappings.count > Self.cachedMappings { state.mappings.removeFirst() }
        }
        return mapping
    }
}

extension ReadLease {
    /// The mappings kept that `writer` handed out, most recently used last.
    func cached(from writer: String) -> [MemoryMapping] {
        state.withLock { $0.mappings.filter { $0.writer == writer }.map(\.mapping) }
    }
}

/// One hold of a generation on a ``ReadLease``, released when the last reference
/// goes (a ``SegmentReader`` and every ``Chunk`` read through it keep one).
public final class LeaseHold: Sendable {
    let lease: ReadLease
    public let generation: UInt64

    fileprivate init(lease: ReadLease, generation: UInt64) {
        self.lease = lease
        self.generation = generation
    }

    deinit { lease.release(generation) }
}
