import CShmBusLinux
import Glibc

extension ChannelCursor {
    /// How a spin ended.
    public enum SpinOutcome: Sendable, Equatable {
        /// Something was committed (or the segment retired) while spinning.
        case found
        /// The budget ran out with nothing new: sleep now.
        case ranOut
        /// ``SpinPacing`` did not allow a spin (the last one ran out too recently).
        case notAllowed
    }

    /// Spins on the segment's committed end until something is pending or the pacing's
    /// budget has passed, with the CPU's spin-wait hint between looks
    /// (`shmbus_spin_while_equal_u64`). Bounded by the budget (at most
    /// ``SpinPacing/longestBudget``) and by the clock alone: the committed end, which a
    /// hostile writer may set to anything, only ends the spin early (to be validated
    /// by ``next()``), never prolongs it.
    public func spin(_ pacing: inout SpinPacing) -> SpinOutcome {
        if hasPending() { return .found }
        let start = Self.monotonicNow()
        guard pacing.allowsSpin(at: start) else { return .notAllowed }
        let deadline = start &+ UInt64(pacing.budget.nanoseconds)
        let word = segment.mapping.base.advanced(by: SegmentLayout.committedEndOffset).assumingMemoryBound(to: UInt64.self)
        var seen = shmbus_load_acquire_u64(word)
        while true {
            // 64 spin-wait hints: about 1 to 10 µs, depending on the CPU.
            // (Retirement moves the state word, not the committed end: hence the
            // full look after each run of hints, not only when the end moved.)
            seen = shmbus_spin_while_equal_u64(word, seen, 64)
            if hasPending() { return .found }
            let clock = Self.monotonicNow()
            if clock >= deadline {
                pacing.ranOut(from: start, to: clock)
                return .ranOut
            }
        }
    }

    /// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds (the vDSO: no system call).
    static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

extension Duration {
    /// The whole nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? .min : .max) : product &+ attoseconds / 1_000_000_000
    }
}
