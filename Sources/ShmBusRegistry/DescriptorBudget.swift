import Locking
import ShmBusProtocol
import ShmBusSystem

/// How many descriptors the registry's segments may hold, and how many they hold.
///
/// A registered segment costs the registry its own read-only descriptor
/// (``InspectedSegment``) and, when the publisher registered one, the doorbell it hands
/// to subscribers, for as long as it is registered. The rest of RLIMIT_NOFILE is kept
/// for everything else: the bus socket and eventfds, descriptors arriving in calls
/// that wait for a handler or run (bounded by the connection's
/// ``DBusConnection/CallScheduling``), replies carrying descriptors, the keeper's
/// transfers. A registration is refused with `QuotaExceeded` and the reason unless
/// there is room for a segment and a doorbell, instead of failing somewhere inside
/// with `EMFILE` (which used to surface as BadSegment, Failed or InvalidArgs,
/// depending on which call met it).
///
/// Process-wide, as RLIMIT_NOFILE is: registries in one process (tests) share it.
final class DescriptorBudget: Sendable {
    static let shared = DescriptorBudget()

    private struct State {
        var held = 0
        /// Descriptors segments may hold; `Int.max` until a registry configured it.
        var limit = Int.max
        var softLimit = 0
        var reserve = 0
    }

    private let state = Lock(State())

    /// The descriptors segments and doorbells hold now (the metrics' figure).
    var held: Int { state.withLock { $0.held } }

    /// Sets the budget from the soft limit and what the rest of the process needs.
    /// Returns the descriptors left for segments.
    @discardableResult
    func configure(softLimit: Int, reserve: Int) -> Int {
        let limit = max(0, softLimit - reserve)
        state.withLock { $0 = State(held: $0.held, limit: limit, softLimit: softLimit, reserve: reserve) }
        return limit
    }

    /// One descriptor, taken only if `room` are free (a segment asks room for itself
    /// and a doorbell); throws `QuotaExceeded` otherwise, unless `force` (segments taken
    /// back from the keeper are never dropped for it, nor is a doorbell registered with
    /// a segment that fitted).
    func charge(room: Int = 1, force: Bool = false) throws(ShmBusError) -> Charge {
        let refusal = state.withLock { state -> String? in
            guard force || state.held + room <= state.limit else {
                return "the registry is out of file descriptors: its segments and their doorbells hold \(state.held) "
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

    /// One descriptor's share, given back when released (with the segment, or with a
    /// registration that failed after taking it).
    final class Charge: Sendable {
        private let budget: DescriptorBudget
        fileprivate init(_ budget: DescriptorBudget) { self.budget = budget }
        deinit { budget.refund() }
    }
}
