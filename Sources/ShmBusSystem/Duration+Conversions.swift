import Glibc

/// The conversions system calls and displays need, in one place: the kernel wants
/// nanoseconds, milliseconds or a `timespec`; people want seconds.
extension Duration {
    /// Whole nanoseconds, negative durations as zero, saturating at `Int64.max`
    /// (futex and `ppoll` timeouts, CLOCK_REALTIME deadlines).
    @inlinable
    public var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (sum, carry) = whole.addingReportingOverflow(max(0, attoseconds / 1_000_000_000))
        return carry ? .max : sum
    }

    /// Milliseconds rounded up (a wait never ends early), negative as zero, saturating
    /// (`poll` timeouts).
    public var roundedUpMilliseconds: Int64 {
        let nanoseconds = clampedNanoseconds
        return nanoseconds / 1_000_000 + (nanoseconds % 1_000_000 == 0 ? 0 : 1)
    }

    /// The same as a `timespec` (`nanosleep`), negative as zero.
    public var timespec: Glibc.timespec {
        let nanoseconds = clampedNanoseconds
        return Glibc.timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }

    /// Seconds as a `Double`, for rates and display.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
