import CShmBusLinux

extension MemoryMapping {
    /// Bytes per block of ``populated``: what one bit says is populated.
    static let populateBlock = 2 << 20

    /// Populates the page tables for `[offset, offset + count)` of the mapping
    /// (`madvise(MADV_POPULATE_READ)`), skipping whole 2 MiB blocks this mapping has
    /// populated before.
    ///
    /// Populating pages that are populated already still walks every entry and moves
    /// each page on the kernel's LRU lists: for 64 MiB of reused memory a reader had
    /// read before, about a third of its time for the transfer (docs/BENCHMARKS.md,
    /// "Reused memory"). Pages stay populated unless the kernel takes them back under
    /// pressure; a page it took is then faulted in by the read, as without the call.
    /// Blocks the range covers only in part are populated each time and not recorded.
    func populate(offset: Int, count: Int) {
        guard count > 0, offset >= 0, offset <= length - count else { return }
        let block = Self.populateBlock
        let firstWhole = (offset + block - 1) / block
        let endWhole = (offset + count) / block
        guard firstWhole < endWhole else {
            _ = shmbus_populate_read(base.advanced(by: offset), count)
            return
        }
        // The partial ends, then the whole blocks not populated yet, in runs.
        if offset < firstWhole * block { _ = shmbus_populate_read(base.advanced(by: offset), firstWhole * block - offset) }
        if offset + count > endWhole * block {
            _ = shmbus_populate_read(base.advanced(by: endWhole * block), offset + count - endWhole * block)
        }
        let wanted = populated.withLock { done -> [Range<Int>] in
            var runs: [Range<Int>] = []
            var index = firstWhole
            while index < endWhole {
                guard !done.contains(index) else {
                    index += 1
                    continue
                }
                let start = index
                while index < endWhole, !done.contains(index) { index += 1 }
                runs.append(start..<index)
            }
            return runs
        }
        for run in wanted {
            guard shmbus_populate_read(base.advanced(by: run.lowerBound * block), run.count * block) == 0 else { continue }
            populated.withLock { $0.formUnion(run) }
        }
    }
}
