import Foundation
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// `Wait.spin`: a subscriber that spins on the segment before it sleeps on the doorbell
/// gets what a futex subscriber gets (every chunk, exact gaps, the segments that
/// follow collections), and after a spin that found nothing it sleeps on the doorbell
/// and is woken from there. Behaviour only, through its counters: never timings.
@Suite struct SpinSubscriberTests {
    /// What a reader saw: its events in order, shared with the thread that reads.
    final class Seen: Sendable {
        let events = Lock<[String]>([])
        let sequences = Lock<[UInt64]>([])
        let missed = Lock<UInt64>(0)

        func take(_ event: Subscriber.Event) {
            switch event {
            case .chunk(let chunk):
                sequences.withLock { $0.append(chunk.sequence) }
                let intact = chunk.withUnsafeBytes { $0.count == 4000 && $0.allSatisfy { $0 == 9 } }
                events.withLock { $0.append("chunk \(chunk.sequence) \(intact)") }
            case .gap(let count, let after):
                missed.withLock { $0 += count }
                events.withLock { $0.append("gap \(count) after \(after)") }
            case .publisherLeft(let owner):
                events.withLock { $0.append("left \(owner)") }
            }
        }

        var count: Int { sequences.withLock { $0.count } }
    }

    /// Waits (bounded: only a hang fails) until `condition` holds.
    static func eventually(_ what: String, _ seen: Seen? = nil, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("never: \(what); seen \(seen?.events.withLock { $0.suffix(5) } ?? [])")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Early chunks collected before the subscriber reads them come as one exact gap;
    /// everything published while it spins comes in order; with nothing more published
    /// its spins run out and it sleeps on the doorbell, from which the next chunk wakes
    /// it. Through `readBlocking` on a thread of its own, and through the iterator.
    @Test(.timeLimit(.minutes(5)), arguments: [true, false])
    func aSpinSubscriberGetsEveryChunkAndExactGapsAndParksAfterItsBudget(blocking: Bool) async throws {
        let fixture = try await RegistryFixture()
        let channel = "spin/\(blocking ? "blocking" : "iterator")"
        let publisher = try await fixture.smallSegmentPublisher(channel: channel)
        let chunk = [UInt8](repeating: 9, count: 4000)
        // About 15 chunks a 64 KiB segment, at most two segments live: the first of
        // these 100 are collected away before anyone reads them.
        for _ in 0..<100 { try publisher.publish(chunk) }
        await publisher.flush()
        let subscriber = try await Subscriber.open(
            channel: channel, on: .address(fixture.address), options: .init(start: .sequence(1), wait: .spin(.microseconds(200))))
        let seen = Seen()
        let reader: Task<Void, any Error>
        if blocking {
            reader = Task.detached {
                try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
                    Thread { done.resume(with: Result { try subscriber.readBlocking { seen.take($0); return true } }) }.start()
                }
            }
        } else {
            reader = Task { for try await event in subscriber { seen.take(event) } }
        }
        try await Self.eventually("the first 100 delivered or reported", seen) { (seen.sequences.withLock { $0.last } ?? 0) >= 100 }
        let missed = seen.missed.withLock { $0 }
        #expect(missed > 0, "the first segments were collected before the subscriber came")
        #expect(seen.sequences.withLock { $0 } == Array((missed + 1)...100), "then every chunk after the gap, in order")
        #expect(seen.events.withLock { $0.first } == "gap \(missed) after 0", "one exact gap first")

        // Published while it reads, through more collections: every one. Ten at a time
        // (a segment holds 15), so that however slow this machine, the reader is never
        // more than a segment behind and nothing it has not read is collected.
        for round in 0..<20 {
            for _ in 0..<10 { try publisher.publish(chunk) }
            try await Self.eventually("round \(round) delivered") { (seen.sequences.withLock { $0.last } ?? 0) >= UInt64(110 + 10 * round) }
        }
        #expect(seen.sequences.withLock { $0 } == Array((missed + 1)...300))
        #expect(seen.missed.withLock { $0 } == missed, "a reader that keeps up misses nothing")

        // Nothing more published: its spins run out, and it sleeps on the doorbell.
        try await Self.eventually("a spin ran out") { subscriber.statistics.spinsRanOut >= 1 }
        let ranOut = subscriber.statistics.spinsRanOut
        try await Task.sleep(for: .milliseconds(50))
        try publisher.publish(chunk)
        try await Self.eventually("the chunk after the park delivered") { seen.count == Int(300 - missed) + 1 }
        let statistics = subscriber.statistics
        #expect(statistics.spinsRanOut >= ranOut)
        #expect(statistics.spinsFound + statistics.spinsRanOut + statistics.spinsNotAllowed >= 1)
        #expect(statistics.signals == 0, "a spin subscriber leaves the bus's Committed signals alone")
        #expect(statistics.segmentsFollowed >= 1, "it followed the collections")
        #expect(seen.events.withLock { $0.allSatisfy { !$0.hasSuffix("false") } }, "every payload intact")
        subscriber.cancel()
        try await reader.value
        await publisher.close()
    }

    /// `shmbus subscribe --wait spin` and `--wait spin:BUDGET` against a real daemon; a
    /// budget that is not a duration, or is over the longest, is refused up front.
    @Test(.timeLimit(.minutes(5)))
    func theCommandLineSubscribesWithASpinWait() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "spin/cli", on: .address(fixture.address))
        for i in 0..<5 { try publisher.publish(Array("chunk \(i)".utf8)) }
        await publisher.flush()
        for wait in ["spin", "spin:50us", "spin:2ms", "spin:0ns"] {
            let (status, out, err) = try await fixture.run([
                "subscribe", "--channel", "spin/cli", "--from", "oldest", "--count", "5", "--json", "--wait", wait,
            ])
            #expect(status == .exited(0), "\(wait): \(err)")
            let lines = out.split(separator: "\n")
            #expect(lines.count == 5, "\(wait): \(out)")
            #expect(lines.allSatisfy { $0.contains("\"event\":\"chunk\"") }, "\(wait): \(out)")
        }
        // Chunks published after the subscriber started, while it waits.
        let live = try ChildProcess(
            fixture.shmbus, ["subscribe", "--channel", "spin/cli", "--from", "now", "--count", "3", "--wait", "spin:100us", "--bus", fixture.address],
            stdout: .pipe, stderr: .pipe)
        // Published until it has its three: `--from now` counts from whenever it
        // subscribed, which on a loaded machine came after a fixed wait of 300 ms had
        // passed and three chunks were gone, and the test then waited for ever.
        let feeder = Task {
            var i = 0
            while !Task.isCancelled {
                try publisher.publish(Array("live \(i)".utf8))
                i += 1
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        var lines: [String] = []
        while let line = try await live.readLine() { lines.append(line) }
        feeder.cancel()
        _ = await feeder.result
        #expect(await live.exit() == .exited(0))
        #expect(lines.count == 3 && lines.allSatisfy { $0.hasPrefix("sequence ") }, "\(lines)")
        for bad in ["spin:", "spin:fast", "spin:50", "spin:1s", "spin:101ms", "spin:-5us"] {
            let (status, _, err) = try await fixture.run(["subscribe", "--channel", "spin/cli", "--wait", bad])
            #expect(status != .exited(0), "\(bad) accepted")
            #expect(err.contains("--wait"), "\(bad): \(err)")
        }
        await publisher.close()
    }
}
