import ShmBusPolicy
import SharedSegments

extension Publisher {
    /// How a publisher writes, announces and keeps its segments.
    public struct Options: Sendable {
        /// Bytes per segment, header included; the largest chunk is a bit smaller.
        public var capacity: UInt64 = 64 << 20
        public var garbageCollection: GarbageCollectionPolicy = .default
        /// Keep the segments after this process leaves the bus.
        public var persistent = false
        /// With `persistent`: how long the segments outlive the publisher.
        public var ttl: Duration?
        /// The minimum interval between two `Committed` signals; commits in between
        /// are announced together.
        public var minimumSignalInterval: Duration = .milliseconds(1)
        /// Ask for transparent huge pages for the segments (`madvise(MADV_HUGEPAGE)`).
        /// Where the system allows them for shared memory
        /// (`/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `advise`,
        /// `within_size` or `always`), subscribers map large chunks with a 512th of the
        /// page-table work; memory is then taken 2 MiB at a time. Elsewhere (Debian's
        /// default is `never`) it changes nothing.
        public var hugePages = true
        /// Bytes of segment memory to keep faulted in past the last chunk, on a
        /// background thread: copying a payload into fresh shared memory otherwise
        /// costs a page fault per 4 KiB, most of the time of a large publish
        /// (docs/BENCHMARKS.md, "Copies"). For a larger chunk, call
        /// ``Publisher/prepare(forChunksOf:key:timeout:)`` before publishing it. 0 turns
        /// prefaulting off.
        public var prefaultBytes: UInt64 = 4 << 20
        /// Keys this publisher is about to publish. When it continues a channel whose
        /// publisher left, the previous chunks of these keys are not carried over into
        /// its first segment (they would be obsolete at once): a one-shot publish of a
        /// key then holds the new chunk only.
        public var replacingKeys: Set<String> = []
        /// Who may read besides this process's Unix user and root (docs/SECURITY.md):
        /// the registry and this publisher's own `Publisher1.OpenSegment` refuse
        /// everyone else.
        public var readers: ReadPolicy = .ownerOnly
        /// How long ``Publisher/close()`` keeps this connection on the bus after the
        /// last garbage collection, when the segments are not persistent. A reader
        /// still on the retired generation needs the new one from the registry or
        /// from this publisher, and the registry drops it as this connection leaves:
        /// without the wait, a publisher that closes right after a collection takes
        /// its last chunks along (the subscriber ends on the retired generation and
        /// counts `successorsLost`). Only a close within this time of a collection
        /// waits, for the rest of it; a killed process cannot wait at all.
        public var linger: Duration = .milliseconds(500)
        /// Give the memory of retired segments to later generations once no
        /// subscriber can still be reading it (format version 2, docs/FORMAT.md
        /// "Reused memory"). Subscribers hand this publisher a lease page
        /// (`Publisher1.Lease`) and keep the generations they have views of in it;
        /// a channel that rotates steadily then cycles through four segments' memory
        /// that its subscribers have mapped already, and a large chunk is read
        /// without filling page tables again (docs/BENCHMARKS.md). Readers that know
        /// only format version 1 (ShmBus before it, the Python package today) cannot
        /// read such a channel. Not with `persistent`: the registry keeps persistent
        /// segments, and no lease outlives the publisher. A subscriber's lease lasts
        /// as long as its connection, which the subscriber keeps open while it or a
        /// chunk read through it lives; on a connection you passed in and close
        /// yourself, chunks kept after the close may change.
        public var reuseMemory = false
        public init() {}
    }
}
