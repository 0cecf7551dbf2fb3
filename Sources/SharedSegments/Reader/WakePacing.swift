import ShmBusSystem

/// How a reader paces its sleeps on a doorbell, which every reader of the channel may
/// write and any holder of a mapping may `FUTEX_WAKE` (docs/FORMAT.md, "Doorbell").
///
/// A wake-up is only a hint to look at the segment again; what counts is what the
/// segment says. Two things can go wrong, and neither may cost more than latency:
///
/// - **Waits that end at once with nothing new** (wake-ups nobody committed for, or a
///   futex word that keeps changing): a reader that went straight back to
///   `FUTEX_WAIT` would spin at the pace of whoever disturbs it. After one such return
///   (spurious wake-ups happen) it sleeps instead, 1 ms, then twice as long each time
///   the next wait ends the same way, up to ``longestBackOff``; between two sleeps it
///   tries the futex once more, so a real commit is seen after at most one back-off
///   and the bell is used again as soon as it brings something.
/// - **Wake-ups that never come** (the flag held at "nobody sleeps", the sleepers
///   requeued elsewhere, a writer holding back): a wait that times out and finds
///   something new proves a wake-up was missed, so the reader waits at most
///   ``distrustedStep`` at a time from then on, until ``wakesToTrustAgain`` wake-ups in
///   a row have brought something (one is not enough: a reader whose sleepers are
///   requeued away without end still catches a ring now and then).
public struct WakePacing: Sendable, Equatable {
    /// What to do next.
    public enum Plan: Sendable, Equatable {
        /// `FUTEX_WAIT` for at most this long.
        case wait(Duration)
        /// Sleep this long without the futex, then look.
        case sleep(Duration)
    }

    /// Early returns with nothing new that are retried at once before backing off.
    public static let idleWakesAllowed = 1
    public static let firstBackOff: Duration = .milliseconds(1)
    public static let longestBackOff: Duration = .milliseconds(16)
    /// The longest wait once a wake-up was missed.
    public static let distrustedStep: Duration = .milliseconds(10)
    /// Wake-ups in a row that brought something before full steps are waited again.
    public static let wakesToTrustAgain = 4

    /// Waits in a row that ended early with nothing new.
    public private(set) var idleWakes = 0
    /// The last thing done was a back-off sleep: the next is a futex wait.
    public private(set) var justSlept = false
    /// A wait timed out although something had been committed.
    public private(set) var missedWakeUp = false
    /// Since the missed wake-up: wake-ups in a row that brought something.
    public private(set) var goodWakes = 0

    public init() {}

    /// What to do, waiting at most `step` (the caller's step, or the time left).
    public func plan(step: Duration) -> Plan {
        if idleWakes > Self.idleWakesAllowed, !justSlept { return .sleep(min(backOff, step)) }
        return .wait(missedWakeUp ? min(step, Self.distrustedStep) : step)
    }

    /// The current back-off: 1, 2, 4, … ms up to ``longestBackOff``.
    var backOff: Duration {
        let doublings = min(idleWakes - Self.idleWakesAllowed - 1, 16)
        return min(Self.firstBackOff * (1 << max(doublings, 0)), Self.longestBackOff)
    }

    /// Records a back-off sleep.
    public mutating func slept() { justSlept = true }

    /// Records how a futex wait ended and whether the segment had something new after it.
    public mutating func waited(_ result: Futex.WaitResult, progressed: Bool) {
        justSlept = false
        switch result {
        case .timedOut:
            // Committed while we slept, yet nobody woke us.
            if progressed {
                missedWakeUp = true
                goodWakes = 0
            }
        case .woken, .valueChanged, .interrupted:
            if progressed {
                // The bell works (again).
                idleWakes = 0
                goodWakes += 1
                if goodWakes >= Self.wakesToTrustAgain { missedWakeUp = false }
            } else {
                idleWakes = min(idleWakes + 1, 1 << 16)
                goodWakes = 0
            }
        }
    }
}
