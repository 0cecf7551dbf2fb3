import CShmBusLinux
import Foundation
import Glibc
@testable import SharedSegments
import ShmBusSystem
import Synchronization
import Testing

/// The rules by which readers and writers of a doorbell that anyone may write pace
/// themselves (`WakePacing`, `RingPacing`), and a doorbell under a storm of wake-ups in
/// one process. The same attacks between real processes: ShmBusTests'
/// DoorbellAttackTests.
@Suite struct DoorbellPacingTests {
    @Test func aReaderWokenForNothingBacksOffUpToItsLongestSleep() {
        var pacing = WakePacing()
        let step = Duration.milliseconds(100)
        #expect(pacing.plan(step: step) == .wait(step))
        // One early return with nothing new is retried at once (spurious wake-ups).
        pacing.waited(.woken, progressed: false)
        #expect(pacing.plan(step: step) == .wait(step))
        var sleeps: [Duration] = []
        for _ in 0..<8 {
            pacing.waited(.valueChanged, progressed: false)
            guard case .sleep(let pause) = pacing.plan(step: step) else {
                Issue.record("no back-off after \(pacing.idleWakes) idle wake-ups")
                return
            }
            sleeps.append(pause)
            pacing.slept()
            // Between two sleeps it tries the futex once more.
            #expect(pacing.plan(step: step) == .wait(step))
        }
        #expect(sleeps.map { $0 / .milliseconds(1) } == [1, 2, 4, 8, 16, 16, 16, 16])
        // Never longer than the time left.
        pacing.waited(.interrupted, progressed: false)
        #expect(pacing.plan(step: .microseconds(300)) == .sleep(.microseconds(300)))
        // A wake-up that brought something: the bell works again.
        pacing.waited(.woken, progressed: true)
        #expect(pacing.idleWakes == 0)
        #expect(pacing.plan(step: step) == .wait(step))
    }

    @Test func aReaderThatMissedAWakeUpWaitsShorterStepsUntilOneComesAgain() {
        var pacing = WakePacing()
        let step = Duration.milliseconds(100)
        pacing.waited(.timedOut, progressed: false)
        #expect(pacing.plan(step: step) == .wait(step), "a quiet channel: nothing was missed")
        pacing.waited(.timedOut, progressed: true)
        #expect(pacing.plan(step: step) == .wait(WakePacing.distrustedStep))
        pacing.waited(.timedOut, progressed: false)
        #expect(pacing.plan(step: step) == .wait(WakePacing.distrustedStep))
        // Trusted again only after several wake-ups in a row brought something.
        for _ in 1..<WakePacing.wakesToTrustAgain { pacing.waited(.woken, progressed: true) }
        #expect(pacing.plan(step: step) == .wait(WakePacing.distrustedStep))
        pacing.waited(.woken, progressed: false)
        for _ in 1..<WakePacing.wakesToTrustAgain { pacing.waited(.woken, progressed: true) }
        #expect(pacing.plan(step: step) == .wait(WakePacing.distrustedStep), "a wake-up for nothing starts the count again")
        pacing.waited(.woken, progressed: true)
        #expect(pacing.plan(step: step) == .wait(step))
    }

    @Test func aWriterHoldsBackAfterItsBudgetOfRingsForNobodyNeverForRingsThatWokeSomeone() throws {
        var pacing = RingPacing()
        for _ in 0..<10_000 { pacing.rang(woken: 1) }
        let heldBackAfterFruitful = pacing.holdsBack()
        #expect(!heldBackAfterFruitful, "rings that woke a sleeper are never rationed")
        // The budget is per period of the coarse clock (shorter than its tick), which
        // starts again at the first ring for nobody after the clock has moved. So rings
        // within one tick hold back at exactly the budget, and a tick falling among them
        // starts a new period (twice the budget allows one). A run that the machine
        // interrupted for longer, so that the clock moved twice or more, proves nothing:
        // it is made again, from a fresh tick.
        var resolution = timespec()
        clock_getres(CLOCK_MONOTONIC_COARSE, &resolution)
        let tick = UInt64(resolution.tv_sec) * 1_000_000_000 + UInt64(resolution.tv_nsec)
        var fruitless = 0
        var rungForNobody = 0
        var holds = 0
        var ticks: UInt64 = 0
        for attempt in 1...100 {
            let previous = RingPacing.now()
            while RingPacing.now() == previous {}
            let start = RingPacing.now()
            fruitless = 0
            while !pacing.holdsBack(), fruitless < 2 * RingPacing.fruitlessBudget {
                pacing.rang(woken: 0)
                fruitless += 1
            }
            ticks = (RingPacing.now() - start) / max(tick, 1)
            rungForNobody += fruitless
            if pacing.owed { holds += 1 }
            if ticks < 2 { break }
            print("ring pacing, attempt \(attempt): the coarse clock moved \(ticks) times during the rings; again")
        }
        let heldAt = RingPacing.now()
        #expect(fruitless <= 2 * RingPacing.fruitlessBudget && pacing.owed, "held back after \(fruitless) rings for nobody")
        if ticks == 0 { #expect(fruitless == RingPacing.fruitlessBudget, "within one tick: held back at the budget") }
        #expect(pacing.statistics.heldBack == UInt64(holds))
        // The hold ends with the period: by the coarse clock, at most one period after
        // it began (no later than `heldAt`).
        let deadline = ContinuousClock.now + .seconds(60)
        while RingPacing.now() < heldAt + RingPacing.period, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
        let heldBackLater = pacing.holdsBack()
        #expect(!heldBackLater)
        pacing.rang(woken: 1)
        #expect(!pacing.owed)
        #expect(pacing.statistics.rings == 10_000 + UInt64(rungForNobody) + 1)
    }

    /// The flag: a reader sets it before it sleeps, the writer clears it when it rings,
    /// and rings only while it is set.
    @Test func theWriterRingsOnlyWhileAReaderSaysItMaySleep() throws {
        let writer = try ChannelWriter(channel: "test/doorbell", capacity: 1 << 20)
        let reader = try Doorbell.open(writer.doorbell.fileDescriptor)
        let flag = reader.mapping.base.advanced(by: SegmentLayout.doorbellSleepingOffset).assumingMemoryBound(to: UInt32.self)
        try [UInt8](repeating: 1, count: 16).withUnsafeBytes { _ = try writer.append($0) }
        #expect(writer.doorbellStatistics.rings == 0, "nobody sleeps")
        reader.wait(timeout: .milliseconds(1)) { false }
        #expect(shmbus_load_acquire_u32(flag) == 1)
        try [UInt8](repeating: 2, count: 16).withUnsafeBytes { _ = try writer.append($0) }
        #expect(writer.doorbellStatistics.rings == 1)
        #expect(shmbus_load_acquire_u32(flag) == 0, "cleared by the ring")
        try [UInt8](repeating: 3, count: 16).withUnsafeBytes { _ = try writer.append($0) }
        #expect(writer.doorbellStatistics.rings == 1, "rung once for the sleepers there were")
    }

    /// A thread wakes the doorbell's word as fast as it can while a reader waits with
    /// nothing to read: the reader's waits end early, so it backs off, and makes a few
    /// dozen waits in 300 ms instead of one per wake-up.
    @Test func aStormOfWakeUpsDoesNotMakeAReaderSpin() throws {
        let writer = try Doorbell.create()
        let reader = try Doorbell.open(writer.fileDescriptor)
        let word = UInt(bitPattern: writer.mapping.base.advanced(by: SegmentLayout.doorbellWordOffset))
        final class Storm: Sendable {
            let stopRequested = Atomic(false)
            let wakes = Atomic(0)
        }
        let state = Storm()
        let storm = Thread {
            let pointer = UnsafePointer<UInt32>(bitPattern: word)!
            while !state.stopRequested.load(ordering: .relaxed) {
                _ = shmbus_futex_wake(pointer, .max)
                state.wakes.add(1, ordering: .relaxed)
            }
        }
        storm.start()
        defer { state.stopRequested.store(true, ordering: .relaxed) }
        // The 300 ms start once the storm does: a thread started on a loaded machine can
        // take a while to run, and waits without a storm prove nothing.
        let started = ContinuousClock.now + .seconds(60)
        while state.wakes.load(ordering: .relaxed) == 0, ContinuousClock.now < started { Thread.sleep(forTimeInterval: 0.001) }
        try #require(state.wakes.load(ordering: .relaxed) > 0, "the storm thread never ran")
        var waits = 0
        let window = ContinuousClock.now + .milliseconds(300)
        while ContinuousClock.now < window {
            reader.wait(timeout: .milliseconds(100)) { false }
            waits += 1
        }
        print("a wake-up storm for 300 ms: \(waits) waits, pacing \(reader.readerPacing)")
        #expect(waits < 200, "\(waits) waits")
        // The storm shares the machine with the whole suite: should it not have been
        // scheduled during the window, the reader's waits timed out instead of ending
        // early. Keep waiting (a bound only against a reader that never backs off) until
        // early returns have made it back off.
        let backedOff = ContinuousClock.now + .seconds(60)
        while reader.readerPacing.idleWakes <= WakePacing.idleWakesAllowed, ContinuousClock.now < backedOff {
            reader.wait(timeout: .milliseconds(100)) { false }
        }
        #expect(reader.readerPacing.idleWakes > WakePacing.idleWakesAllowed)
    }
}
