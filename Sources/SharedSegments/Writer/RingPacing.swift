import Glibc

/// What a writer's doorbell did, for monitoring and tests.
public struct DoorbellStatistics: Sendable, Hashable {
    /// `FUTEX_WAKE` calls made.
    public var rings: UInt64 = 0
    /// Rings that woke nobody: the flag said a reader sleeps, but none did (a reader
    /// that found a chunk just before it would have slept, or one writing the flag).
    public var fruitlessRings: UInt64 = 0
    /// Commits after which the writer did not look at the doorbell because too many
    /// rings had woken nobody (see ``RingPacing``).
    public var heldBack: UInt64 = 0
}

/// How often a writer rings when its rings wake nobody.
///
/// The sleeping flag is written by readers, so any of them can keep it at "someone
/// sleeps"; a writer that believed it would make a `FUTEX_WAKE` system call after every
/// commit, which costs about as much as a small publish itself (380 ns on the
/// development machine, beside 500 ns). So a writer allows itself
/// ``fruitlessBudget`` rings that woke nobody per ``period``; past that it holds back:
/// it does not look at the doorbell at all until the period is over (a reader writing
/// the flag without end would otherwise also cost it a cache miss per commit). A
/// ring that was held back is owed: the next commit after the hold rings, and a
/// publisher whose commits stop rings once the hold is over (``owed``,
/// `ChannelWriter.ringHeldBack()`), so an honest reader that fell asleep meanwhile
/// waits about one period, never its whole timeout.
///
/// The clock is `CLOCK_MONOTONIC_COARSE` (a few ns to read; its tick, 1 to 4 ms, is
/// the real length of a period), read only after a ring that woke nobody and while
/// holding back. Rings that woke someone are never limited: a reader that sleeps is
/// what the doorbell is for.
public struct RingPacing: Sendable {
    /// Rings that may wake nobody in one period before the writer holds back.
    public static let fruitlessBudget = 32
    /// The period, in nanoseconds of the coarse clock.
    public static let period: UInt64 = 1_000_000
    /// How long after a held-back ring a publisher should ring (`ChannelWriter.ringHeldBack()`).
    public static let holdDuration: Duration = .milliseconds(5)

    private var periodStart: UInt64 = 0
    private var fruitlessInPeriod = 0
    /// While holding back: until when (coarse clock).
    private var holdUntil: UInt64?
    /// A commit was not rung for since the last ring.
    public private(set) var owed = false
    public private(set) var statistics = DoorbellStatistics()

    public init() {}

    /// Whether the writer holds back after this commit (then it must not look at the
    /// doorbell). Cheap when not holding: one comparison.
    @inline(__always)
    mutating func holdsBack() -> Bool {
        guard let until = holdUntil else { return false }
        if Self.now() < until {
            owed = true
            statistics.heldBack += 1
            return true
        }
        holdUntil = nil
        return false
    }

    /// Records a ring that woke `woken` sleepers.
    mutating func rang(woken: Int) {
        owed = false
        statistics.rings += 1
        guard woken == 0 else { return }
        statistics.fruitlessRings += 1
        let now = Self.now()
        if now &- periodStart >= Self.period {
            periodStart = now
            fruitlessInPeriod = 0
        }
        fruitlessInPeriod += 1
        if fruitlessInPeriod >= Self.fruitlessBudget { holdUntil = periodStart &+ Self.period }
    }

    /// Clears ``owed`` (the held-back ring is made, or nobody needs it).
    mutating func settle() { owed = false }

    /// `clock_gettime(CLOCK_MONOTONIC_COARSE)` in nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
