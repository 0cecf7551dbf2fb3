import Glibc
import ShmBusSystem

/// CLOCK_REALTIME in nanoseconds: the clock of timestamps and expiry in segments. All
/// processes share it, including those in other time namespaces (which offset only
/// the monotonic and boot clocks).
public enum RealtimeClock {
    /// `clock_gettime(CLOCK_REALTIME)`.
    @inline(__always)
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// `now() + duration`, saturating.
    public static func after(_ duration: Duration) -> UInt64 {
        let (sum, overflow) = now().addingReportingOverflow(UInt64(duration.clampedNanoseconds))
        return overflow ? UInt64.max : sum
    }
}
