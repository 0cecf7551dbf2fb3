/// How much a reader that spins before it sleeps (`Subscriber.Wait.spin`) may spin, so
/// that no writer can make it burn a core without end.
///
/// A spin watches the segment's committed end, which only the writer moves. An honest
/// writer that commits faster than the budget ends every spin early, with a chunk:
/// such spins are what the reader asked for and are never limited. A spin that runs out
/// its budget is paid for by the reader, and a writer that commits just after each
/// budget ran out (hostile, or unlucky) would otherwise keep the reader spinning nearly
/// all the time: so after a spin that ran out, the next one is allowed only once as
/// much time has passed outside spinning as that spin took. Spins that find nothing
/// then take at most half of the reader's time, whatever the writer does; the other
/// half the reader sleeps on the doorbell exactly as `Wait.futex` does. (The doorbell,
/// which every reader may write, plays no part in spinning: the futex wait after it is
/// paced by ``WakePacing``.)
public struct SpinPacing: Sendable, Equatable {
    /// The longest budget a spin is given, whatever was asked: one spin never holds a
    /// core longer than this.
    public static let longestBudget: Duration = .milliseconds(100)

    /// The budget asked for, clamped to `0...longestBudget`.
    public let budget: Duration
    /// When spinning is allowed again (monotonic nanoseconds), after a spin that ran out.
    public private(set) var allowedFrom: UInt64 = 0

    public init(budget: Duration) {
        self.budget = min(max(budget, .zero), Self.longestBudget)
    }

    /// Whether to spin before sleeping, now (monotonic nanoseconds).
    public func allowsSpin(at now: UInt64) -> Bool {
        budget > .zero && now >= allowedFrom
    }

    /// Records a spin from `start` to `end` (monotonic nanoseconds) that found nothing.
    public mutating func ranOut(from start: UInt64, to end: UInt64) {
        allowedFrom = end &+ (end &- start)
    }
}
