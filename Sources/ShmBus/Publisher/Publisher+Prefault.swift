import SharedSegments

extension Publisher {
    /// Gets the segment memory for a chunk of `length` bytes ready before it is
    /// published: the background thread faults it in (as it does
    /// ``Options-swift.struct/prefaultBytes`` ahead of every chunk) and this returns
    /// once it has, or after
    /// `timeout`. Returns whether the memory is ready.
    ///
    /// Call it off the publish path (between frames, say) before copying a large
    /// payload from private memory with ``publish(_:key:expiresIn:)``: the copy then
    /// runs at memory speed instead of a page fault per 4 KiB. Nothing waits for it
    /// otherwise; publishing never depends on it. Returns true at once when
    /// prefaulting is off.
    @discardableResult
    public func prepare(forChunksOf length: Int, key: String = "", timeout: Duration = .seconds(10)) async -> Bool {
        let keyLength = key.utf8.count
        let deadline = ContinuousClock.now + timeout
        while true {
            let ready = writer.withLock { $0.prepare(forPayload: UInt64(max(0, length)), keyLength: keyLength) }
            if ready { return true }
            guard ContinuousClock.now < deadline else { return false }
            // The prefaulter's thread gets through about 2 MiB per millisecond on
            // an idle machine; polling costs one lock per millisecond.
            try? await Task.sleep(for: .milliseconds(1))
        }
    }
}
