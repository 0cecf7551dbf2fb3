import CShmBusLinux

/// The doorbell's second flag, for subscribers of the bus path: they wait for the
/// publisher's `Committed` signal rather than on the futex, and say so here, so that
/// the publisher announces its next commit at once instead of at the end of its
/// coalescing interval (docs/FORMAT.md, "Doorbell").
///
/// Like everything in the doorbell it is a hint that any reader may write: the
/// publisher bounds what it does for it (``CommitNotifier`` in ShmBus: at most one
/// early signal per 1/16 of its interval), and a reader that finds it ignored still
/// gets the coalesced signal.
extension Doorbell {
    private var awaitingSignal: UnsafeMutablePointer<UInt32> {
        mapping.base.advanced(by: SegmentLayout.doorbellAwaitingSignalOffset).assumingMemoryBound(to: UInt32.self)
    }

    /// Reader: it has read everything and now waits for the next `Committed`. A full
    /// fence follows, so that the reader's next look at the segment sees any commit
    /// made before the writer could have seen the flag.
    public func expectSignal() {
        shmbus_store_release_u32(awaitingSignal, 1)
        shmbus_fence_seq_cst()
    }

    /// Writer: whether some reader said it waits for a signal (a load, no fence).
    public var isSignalExpected: Bool {
        shmbus_load_acquire_u32(awaitingSignal) != 0
    }

    /// Writer: clears the flag before sending the signal it asked for; a reader that
    /// sets it again afterwards is served by the signal after that.
    public func takeSignalExpectation() {
        shmbus_store_release_u32(awaitingSignal, 0)
    }
}
