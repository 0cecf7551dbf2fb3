import SharedSegments
import Synchronization

/// The doorbell's rings that the writer held back (see `RingPacing`: too many rings
/// woke nobody, as when a reader keeps the sleeping flag set).
extension Publisher {
    /// A commit went without a ring: rings once the hold is over (unless a later commit
    /// has rung by then), so that a reader that fell asleep during the hold is not left
    /// waiting for its own timeout when nothing more is published. One such ring is
    /// scheduled at a time, so holding back costs at most one task per hold.
    func ringHeldBackLater() {
        guard !heldBackRingScheduled.load(ordering: .relaxed),
            heldBackRingScheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        Task { [weak self] in
            try? await Task.sleep(for: RingPacing.holdDuration)
            guard let self else { return }
            self.heldBackRingScheduled.store(false, ordering: .releasing)
            self.writer.withLock { $0.ringHeldBack() }
        }
    }

    /// What the doorbell did so far: rings, rings that woke nobody, commits held back.
    public var doorbellStatistics: DoorbellStatistics { writer.withLock { $0.doorbellStatistics } }
}
