/// The writer's doorbell beyond the ring after each commit: what it held back, and
/// what it did.
extension ChannelWriter {
    /// Whether a commit went without a ring because the doorbell held back (see
    /// ``RingPacing``): then the owner calls ``ringHeldBack()`` once
    /// ``RingPacing/holdDuration`` has passed, so that a reader that fell asleep during
    /// the hold is woken even if nothing more is committed.
    public var ringOwed: Bool { ringPacing.owed }

    /// Rings for the commits the doorbell held back, if a reader may sleep; nothing if
    /// a ring has happened since.
    public func ringHeldBack() {
        guard ringPacing.owed else { return }
        doorbell.ring(&ringPacing, holdingBack: false)
    }

    /// What the doorbell did so far.
    public var doorbellStatistics: DoorbellStatistics { ringPacing.statistics }
}
