import SharedSegments

/// How a subscriber waits for something new: the options, and the wait on the
/// publisher's doorbell that ``Wait/futex`` and ``Wait/spin(_:)`` share.
extension Subscriber {
    /// How the subscriber learns that there is something new.
    public enum Wait: Sendable, Hashable {
        /// `Committed` signals from the publisher (the default).
        case bus
        /// A futex on the publisher's doorbell, without the bus: a wake-up costs one
        /// `FUTEX_WAKE` from the publisher and, with ``Subscriber/readBlocking(_:)``,
        /// no task switch.
        case futex
        /// Spin on the segment's committed end for up to `budget` (at most
        /// ``longestSpinBudget``), then sleep on the doorbell exactly as
        /// ``futex`` does: a chunk committed during the spin costs neither a system
        /// call nor a wake-up, only the time for its cache line to cross cores.
        ///
        /// Opt-in, because it burns CPU: the reading thread runs flat out while it
        /// spins, up to `budget` after each chunk (docs/BENCHMARKS.md has the figures).
        /// Worth it when chunks come closer together than the budget, or when a
        /// microsecond matters more than a core. Spins that find nothing are rationed:
        /// after one, the next comes only once as much time has passed outside spinning,
        /// so whatever the publisher does they take at most half the reader's time. ``Statistics/spinsFound`` and ``Statistics/spinsRanOut`` say
        /// how the spins ended.
        case spin(Duration)
        /// Look every interval.
        case poll(Duration)

        /// The default budget of ``spin(_:)`` where none is given (`--wait spin`).
        public static let defaultSpinBudget: Duration = .microseconds(50)
        /// The longest budget a spin gets, whatever ``spin(_:)`` asks for.
        public static let longestSpinBudget: Duration = SpinPacing.longestBudget

        /// Whether the subscriber sleeps on the publisher's doorbell (and so leaves
        /// the `Committed` signals alone).
        var usesDoorbell: Bool {
            switch self {
            case .futex, .spin: true
            case .bus, .poll: false
            }
        }
    }

    /// Sleeps on the publisher's doorbell until something is committed or `timeout`
    /// passes (blocking the calling thread; never a thread of the concurrency pool);
    /// with ``Wait/spin(_:)``, spins first (once per call: a futex wait that ends with
    /// nothing new, however often a hostile reader makes it, is never followed by
    /// another spin).
    func waitOnDoorbell(timeout: Duration) {
        reading.withLock { state in
            guard let doorbell = state.doorbell else {
                _ = state.cursor.waitForData(.poll(.milliseconds(1)), timeout: timeout)
                return
            }
            if var pacing = state.spinPacing {
                let outcome = state.cursor.spin(&pacing)
                state.spinPacing = pacing
                status.withLock {
                    switch outcome {
                    case .found: $0.statistics.spinsFound += 1
                    case .ranOut: $0.statistics.spinsRanOut += 1
                    case .notAllowed: $0.statistics.spinsNotAllowed += 1
                    }
                }
                if outcome == .found { return }
            }
            _ = state.cursor.waitForData(.futex(doorbell, timeout: .milliseconds(100)), timeout: timeout)
        }
    }
}
