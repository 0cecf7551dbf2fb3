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
        // The budget is per coarse-clock period; a tick falling inside the loop starts a
        // new period, so allow twice the budget.
        var fruitless = 0
        while !pacing.holdsBack(), fruitless < 2 * RingPacing.fruitlessBudget {
            pacing.rang(woken: 0)
            fruitless += 1
        }
        #expect(fruitless <= 2 * RingPacing.fruitlessBudget && pacing.owed, "held back after \(fruitless) rings for nobody")
        #expect(pacing.statistics.heldBack == 1)
        // The hold ends with the period (the coarse clock's tick at most).
        Thread.sleep(forTimeInterval: 0.01)
        let heldBackLater = pacing.holdsBack()
        #expect(!heldBackLater)
        pacing.rang(woken: 1)
        #expect(!pacing.owed)
        #expect(pacing.statistics.rings == 10_000 + UInt64(fruitless) + 1)
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
        final class Stop: Sendable { let requested = Atomic(false) }
        let stop = Stop()
        let storm = Thread {
            let pointer = UnsafePointer<UInt32>(bitPattern: word)!
            while !stop.requested.load(ordering: .relaxed) { _ = shmbus_futex_wake(pointer, .max) }
        }
        storm.start()
        defer { stop.requested.store(true, ordering: .relaxed) }
        var waits = 0
        let deadline = ContinuousClock.now + .milliseconds(300)
        while ContinuousClock.now < deadline {
            reader.wait(timeout: .milliseconds(100)) { false }
            waits += 1
        }
        print("a wake-up storm for 300 ms: \(waits) waits, pacing \(reader.readerPacing)")
        #expect(waits < 200, "\(waits) waits")
        #expect(reader.readerPacing.idleWakes > WakePacing.idleWakesAllowed)
    }
}
