import Foundation
import Locking
@testable import ShmBus
import SharedSegments
import ShmBusSystem
import TestSupport
import Testing

/// Coalescing only under load (issue 14): a bus-path subscriber that waits says so in
/// the publisher's doorbell, and the publisher then announces its next commit at once
/// instead of at the end of its coalescing interval; a reader that always says so gets
/// at most one early signal per 1/16 of the interval. The intervals here are long (16 s),
/// so a signal sent at once and one held back for the interval are told apart by the
/// publisher's count right after `publish` returns, not by a clock.
@Suite struct UrgentSignalTests {
    static func publisher(_ fixture: RegistryFixture, _ channel: String, interval: Duration) async throws -> Publisher {
        var options = Publisher.Options()
        options.minimumSignalInterval = interval
        return try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
    }

    /// Waits (up to 60 s, a hang guard) until `condition` holds.
    static func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("never: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test func aWaitingSubscriberHearsTheNextCommitAtOnce() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "urgent/waiting", interval: .seconds(16))
        let doorbell = try #require(publisher.notifier.doorbell)
        let subscriber = try await Subscriber.open(channel: "urgent/waiting", on: .address(fixture.address))
        let received = Lock<[UInt64]>([])
        let reader = Task {
            for try await chunk in subscriber.chunks {
                received.withLock { $0.append(chunk.sequence) }
                if received.withLock({ $0.count }) == 2 { return }
            }
        }
        try await Self.eventually("the subscriber reads the empty channel and waits") { doorbell.isSignalExpected }
        let first = try publisher.publish(Array("one".utf8))
        #expect(publisher.signalsSent == 1, "sent at once for the waiting reader")
        try await Self.eventually("the subscriber reads the first chunk and waits") {
            received.withLock { $0 } == [first.sequence] && doorbell.isSignalExpected
        }
        // Past 1/16 of the interval since the first signal, well inside the interval.
        try await Task.sleep(for: .milliseconds(1_100))
        let second = try publisher.publish(Array("two".utf8))
        #expect(publisher.signalsSent == 2, "sent at once for the waiting reader, not 16 s later")
        #expect(!doorbell.isSignalExpected, "the publisher took the flag")
        try await reader.value
        #expect(received.withLock { $0 } == [first.sequence, second.sequence])
        subscriber.cancel()
        await publisher.close()
    }

    /// Nobody waits on the bus path: even the first commit after a quiet time waits for
    /// the interval, so that the signal does not compete with a futex reader the commit
    /// has just woken (docs/BENCHMARKS.md, "Latency paths").
    @Test func withNobodyWaitingEvenTheFirstCommitWaitsForTheInterval() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "urgent/nobody", interval: .seconds(16))
        _ = try #require(publisher.notifier.doorbell)
        _ = try publisher.publish(Array("one".utf8))
        _ = try publisher.publish(Array("two".utf8))
        _ = try publisher.publish(Array("three".utf8))
        #expect(publisher.signalsSent == 0, "all three wait for the interval")
        await publisher.flush()
        #expect(publisher.signalsSent == 1, "and go out together")
        await publisher.close()
    }

    /// Without the doorbell's flag the coalesced signal is what a bus reader that never
    /// sets it hears: `dbus-monitor`, no ShmBus code, gets the commits within the
    /// interval, in one range.
    @Test func aListenerThatNeverSaysItWaitsHearsCommitsWithinTheInterval() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "urgent/monitor", interval: .milliseconds(200))
        let monitor = try ChildProcess(
            "dbus-monitor", ["--address", fixture.address, "type='signal',interface='org.shmbus.Publisher1',member='Committed'"],
            stdout: .pipe)
        defer { monitor.signal(SIGKILL) }
        let output = Lock("")
        let reading = Task {
            for try await line in monitor.lines() { output.withLock { $0 += line + "\n" } }
        }
        defer { reading.cancel() }
        // dbus-monitor prints the NameLost of its becoming a monitor once it listens.
        try await Self.eventually("dbus-monitor listens") { output.withLock { $0.contains("NameLost") } }
        let first = try publisher.publish(Array("one".utf8))
        let last = try publisher.publish(Array("two".utf8))
        #expect(publisher.signalsSent == 0, "nobody said it waits")
        try await Self.eventually("the coalesced signal goes out") { publisher.signalsSent == 1 }
        try await Self.eventually("dbus-monitor prints it") {
            output.withLock { $0.contains("uint64 \(last.sequence)") && $0.contains("\"urgent/monitor\"") }
        }
        let heard = output.withLock { $0 }
        #expect(heard.contains("uint64 \(first.sequence)"), "one range from the first chunk to the last")
        await publisher.close()
    }

    /// A reader may write the flag all the time: the publisher then sends at most one
    /// early signal per 1/16 of its interval, however fast it commits.
    @Test func aReaderThatAlwaysSaysItWaitsGetsAtMostOneEarlySignalPerSpacing() async throws {
        let fixture = try await RegistryFixture()
        let interval = Duration.milliseconds(32)
        let publisher = try await Self.publisher(fixture, "urgent/hostile", interval: interval)
        let doorbell = try #require(publisher.notifier.doorbell)
        let spacing = publisher.notifier.urgentSpacing
        #expect(spacing == .milliseconds(2))
        let stop = Lock(false)
        let hostile = Thread {
            while !stop.withLock({ $0 }) { doorbell.expectSignal() }
        }
        hostile.start()
        let start = ContinuousClock.now
        for index in 0..<100_000 { _ = try publisher.publish([UInt8(truncatingIfNeeded: index)]) }
        let elapsed = ContinuousClock.now - start
        stop.withLock { $0 = true }
        let sent = publisher.signalsSent
        // One at the start, then at most one early signal per spacing and one coalesced
        // signal per interval (all these chunks fit in the first 64 MiB segment).
        let bound = UInt64(elapsed / spacing) + UInt64(elapsed / interval) + 2
        print("urgent signals: 100,000 commits in \(elapsed), \(sent) signals (bound \(bound), spacing \(spacing))")
        #expect(sent <= bound, "\(sent) signals in \(elapsed)")
        #expect(sent > 1, "the hostile flag was honoured at least once")
        await publisher.close()
    }
}
