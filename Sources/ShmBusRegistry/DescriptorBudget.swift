import Locking
import ShmBusProtocol
import ShmBusSystem

/// How many segments the registry's descriptors allow, and how many it holds.
///
/// Each segment costs the registry two descriptors for as long as it is registered:
/// its own read-only one (``InspectedSegment``) and the doorbell it hands to
/// subscribers (publishers register one with every segment; counted for every
/// segment, since the segment object cannot tell). The rest of RLIMIT_NOFILE is kept
/// for everything else: the bus socket and eventfds, descriptors arriving in calls
/// that wait for a handler or run (bounded by the connection's
/// ``DBusConnection/CallScheduling``), replies carrying descriptors, the keeper's
/// transfers. Past the budget a registration is refused with `QuotaExceeded` and the
/// reason, instead of failing somewhere inside with `EMFILE` (which used to surface
/// as BadSegment, Failed or InvalidArgs, depending on which call met it).
///
/// Process-wide, as RLIMIT_NOFILE is: registries in one process (tests) share it.
final class DescriptorBudget: Sendable {
    static let shared = DescriptorBudget()

    static let descriptorsPerSegment = 2

    private struct State {
        var held = 0
        /// Segments allowed; `Int.max` until a registry configured it.
        var segments = Int.max
        var softLimit = 0
        var reserve = 0
    }

    private let state = Lock(State())

    /// Sets the budget from the soft limit and what the rest of the process needs.
    /// Returns the segments allowed.
    @discardableResult
    func configure(softLimit: Int, reserve: Int) -> Int {
        let segments = max(0, softLimit - reserve) / Self.descriptorsPerSegment
        state.withLock { $0 = State(held: $0.held, segments: segments, softLimit: softLimit, reserve: reserve) }
        return segments
    }

    /// The descriptors of one more segment; throws `QuotaExceeded` past the budget
    /// unless `force` (segments taken back from the keeper are never dropped for it).
    func charge(force: Bool = false) throws(ShmBusError) -> Charge {
        let refusal = state.withLock { state -> String? in
            guard force || state.held < state.segments else {
                return "the registry is out of file descriptors: its \(state.held) segments take \(Self.descriptorsPerSegment) each "
                    + "of its RLIMIT_NOFILE of \(state.softLimit), \(state.reserve) being kept for the bus and calls in flight; "
                    + "unregister segments, or raise the daemon's limit (LimitNOFILE=, ulimit -n)"
            }
            state.held += 1
            return nil
        }
        if let refusal { throw .quotaExceeded(refusal) }
        return Charge(self)
    }

    fileprivate func refund() {
        state.withLock { $0.held -= 1 }
    }

    /// One segment's share, given back when released (with the segment, or with a
    /// registration that failed after taking it).
    final class Charge: Sendable {
        private let budget: DescriptorBudget
        fileprivate init(_ budget: DescriptorBudget) { self.budget = budget }
        deinit { budget.refund() }
    }
}
