/// What a ``ChannelWriter`` asks of a ``Prefaulter``.
public struct PrefaultPlan: Sendable {
    public var prefaulter: Prefaulter
    /// Bytes past the committed end to keep faulted in (never more than a segment).
    /// A larger chunk's memory is asked for with
    /// ``ChannelWriter/prepare(forPayload:keyLength:)``, once: a window that grew by
    /// itself to twice the largest chunk had the thread fault in 128 MiB after each
    /// 64 MiB commit, on the cores the subscribers were reading it with, and doubled
    /// their zero-copy transfer time on two cores.
    public var bytesAhead: UInt64

    public init(prefaulter: Prefaulter = .shared, bytesAhead: UInt64 = 4 << 20) {
        self.prefaulter = prefaulter
        self.bytesAhead = bytesAhead
    }
}

/// The writer's side of prefaulting: what it asked for in the current segment, when to
/// ask again, and the memory of the next generation.
struct PrefaultState {
    /// Bytes of the current segment asked for.
    var requested: UInt64 = 0
    /// The committed end at which to ask for more (`UInt64.max`: nothing left to ask).
    var nextRequestAt: UInt64 = .max
    /// Memory for the next generation, being faulted in.
    var spare: SegmentMemory?
    /// Whether this writer has collected garbage: only a writer that rotated once makes
    /// a spare by itself (a one-shot publisher, whose segment is sized for its one
    /// chunk, would only double its memory).
    var hasRotated = false

    mutating func currentChanged() {
        requested = 0
        nextRequestAt = 0
        hasRotated = true
    }
}

extension ChannelWriter {
    /// Bytes kept faulted in past the committed end (0 when prefaulting is off).
    public var prefaultWindow: UInt64 {
        guard let plan = prefault else { return 0 }
        return min(capacity, plan.bytesAhead)
    }

    /// The memory the next generation will use, if one is being prepared.
    public var spareMemory: SegmentMemory? { prefaultState.spare }

    /// The bytes of the next generation's memory to fault in before it is needed: its
    /// header, what garbage collection may copy into it (the retention budget), and a
    /// window past that. A collection copies up to a quarter of a segment (by default)
    /// into new memory; without this, the publishing thread took that copy's page
    /// faults itself (docs/BENCHMARKS.md, "64-byte chunks").
    var spareBytes: UInt64 {
        let area = capacity - UInt64(SegmentLayout.headerSize)
        let copies = UInt64(policy.retainRatio * Double(area))
        return min(capacity, UInt64(SegmentLayout.headerSize) + copies + prefaultWindow)
    }

    /// How far before the current segment's end the spare is asked for: half of it (at
    /// the least, a window). The prefaulter's thread faults in about 2 MiB a
    /// millisecond when it has a core, and a flood of 64-byte chunks fills about 0.45
    /// (3.5 M records of 128 bytes a second), so half gives it twice the time it needs.
    func spareLead(window: UInt64) -> UInt64 { max(window, spareBytes / 2) }

    /// Asks the prefaulter for a window past the committed end of the current segment
    /// (at least `room` bytes), and, where the current segment has less than a window
    /// left, for the first window of the next generation's memory.
    func prefaultAhead(making room: UInt64 = 0, spareWanted: Bool = false) {
        guard let plan = prefault else {
            prefaultState.nextRequestAt = .max
            return
        }
        let window = max(prefaultWindow, min(room, capacity))
        let segment = current
        segment.prefault.skip(to: Int(segment.committedEnd))
        let target = min(segment.capacity, segment.committedEnd + window)
        if target > prefaultState.requested {
            plan.prefaulter.prefault(segment.mapping, fd: segment.fileDescriptor, progress: segment.prefault, upTo: Int(target))
            prefaultState.requested = target
        }
        // Ask again once a quarter of the window is used: one call per window / 4
        // bytes published, whatever the chunk size; and where the spare is due.
        prefaultState.nextRequestAt = target >= segment.capacity ? .max : segment.committedEnd + max(window / 4, 1)
        let spareAt = segment.capacity - min(segment.capacity, spareLead(window: window))
        let spareDue = segment.committedEnd >= spareAt || target >= segment.capacity
        if !spareDue, prefaultState.hasRotated { prefaultState.nextRequestAt = min(prefaultState.nextRequestAt, spareAt) }
        guard spareDue, prefaultState.hasRotated || spareWanted else { return }
        // A retired segment's memory will do, faulted in already (ChannelWriter+Reuse.swift).
        guard !mayReuseMemory else { return }
        if prefaultState.spare.map({ $0.capacity != capacity }) ?? true {
            // Best effort: without it, the next generation is made when needed.
            prefaultState.spare = try? SegmentMemory(channel: channel, capacity: capacity, hugePages: hugePages)
        }
        prefaultState.spare?.prefault(upTo: Int(max(spareBytes, min(capacity, window + UInt64(SegmentLayout.headerSize)))), with: plan.prefaulter)
    }

    /// The next generation's memory, if it was prepared for this capacity; it is used
    /// once.
    func takeSpareMemory() -> SegmentMemory? {
        defer { prefaultState.spare = nil }
        guard let spare = prefaultState.spare, spare.capacity == capacity else { return nil }
        return spare
    }

    /// Gets the memory for a chunk of `length` bytes (with a key of `keyLength` bytes)
    /// ready: asks for its record's bytes past the committed end (or at the start of
    /// the next generation's memory, where it will not fit), and returns whether
    /// it is faulted in now (true also when prefaulting is off or gave up: there is
    /// nothing to wait for). A publisher about to copy a large payload calls it until
    /// it says true, off its publish path.
    public func prepare(forPayload length: UInt64, keyLength: Int = 0) -> Bool {
        guard prefault != nil, let layout = RecordHeader.layout(keyLength: keyLength, payloadLength: length) else { return true }
        let fits = layout.length <= current.freeBytes
        prefaultAhead(making: layout.length, spareWanted: !fits)
        if fits {
            let progress = current.prefault
            return progress.gaveUp || UInt64(progress.preparedBytes) >= current.committedEnd + layout.length
        }
        guard let spare = prefaultState.spare else { return true }
        let needed = min(capacity, max(prefaultWindow, layout.length) + UInt64(SegmentLayout.headerSize))
        return spare.prefault.gaveUp || UInt64(spare.prefault.preparedBytes) >= needed
    }
}
