import Foundation
import ShmBusSystem
import TestSupport
import Testing

/// A hostile reader attacks the futex doorbell (every process that may read a channel
/// is handed it, writable) while an honest `Wait.futex` subscriber reads the channel
/// in a process of its own and a publisher publishes in a third: the subscriber must
/// get every chunk, in order, without burning CPU, and the publisher must go on at its
/// pace. All of them are real processes (`shmbus-test-peer`) on a real registry.
@Suite(.serialized) struct DoorbellAttackTests {
    /// What the hostile reader does (see `attackDoorbell` in the test peer): write any
    /// values over magic, word and flag; keep the word changing; `FUTEX_WAKE` without
    /// end; requeue the sleepers to a word nobody wakes; keep the flag at "nobody
    /// sleeps"; keep it at "someone sleeps". "burn" only burns CPU elsewhere (control).
    static let attacks = ["garbage", "spin", "wake", "requeue", "silence", "pin"]

    /// The figures of one run.
    struct Run: CustomStringConvertible {
        var attack: String
        var received = 0, gaps = 0, missed = 0, problems = 0
        var subscriberCPU = 0, subscriberWall = 0, subscriberSleeps = 0
        var publishMicroseconds = 0, publisherCPU = 0, published = 0
        var attackOperations = 0
        var latencyP50 = 0, latencyP99 = 0, latencyMax = 0
        var rings = 0, fruitlessRings = 0, heldBack = 0

        var publishRate: Int { publishMicroseconds > 0 ? Int(Double(published) * 1e6 / Double(publishMicroseconds)) : 0 }
        var cpuShare: Double { subscriberWall > 0 ? Double(subscriberCPU) / Double(subscriberWall) : 1 }

        var description: String {
            String(
                format:
                    "%@: received %d gaps %d problems %d, latency p50/p99/max %.2f/%.2f/%.2f ms, subscriber cpu %.1f ms in %.1f ms (%.1f%%) sleeps %d; publisher %d/s, rings %d (%d for nobody), held back %d; attack ops %d",
                attack, received, gaps, problems, Double(latencyP50) / 1e3, Double(latencyP99) / 1e3, Double(latencyMax) / 1e3,
                Double(subscriberCPU) / 1e3, Double(subscriberWall) / 1e3, cpuShare * 100, subscriberSleeps, publishRate, rings,
                fruitlessRings, heldBack, attackOperations)
        }
    }

    /// Fields "NAME VALUE NAME VALUE …" of a peer's line, after its first word.
    static func fields(_ line: String) -> [String: Int] {
        let words = line.split(separator: " ").map(String.init)
        var out: [String: Int] = [:]
        var index = 0
        while index + 1 < words.count {
            if let value = Int(words[index + 1]) { out[words[index]] = value }
            index += 2
        }
        out[words.first ?? ""] = words.count > 1 ? Int(words[1]) : nil
        return out
    }

    static func peer(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(BuiltProducts.path("shmbus-test-peer"), arguments, stdin: .pipe, stdout: .pipe, stderr: .inherit)
    }

    static func line(from peer: ChildProcess, startingWith prefix: String) async throws -> String {
        while let line = try await peer.readLine() {
            if line.hasPrefix(prefix) { return line }
        }
        return ""
    }

    /// One run on a fresh channel: `count` chunks of `size` bytes, `interval` µs apart
    /// (0: as fast as the publisher goes), read by an honest futex subscriber (through
    /// the iterator, or `readBlocking` if `blocking`; spinning first if `spin`),
    /// attacked by `attack` (nil: none).
    static func run(
        _ fixture: RegistryFixture, attack: String?, count: Int, size: Int, capacity: Int, interval: Int, blocking: Bool = false,
        spin: Bool = false
    ) async throws -> Run {
        let channel = "doorbell/\(attack ?? "none")/\(UInt32.random(in: 0...UInt32.max))"
        let publisher = try Self.peer(["paced", fixture.address, channel, "\(count)", "\(size)", "\(capacity)", "\(interval)"])
        defer { publisher.closeStandardInput() }
        _ = try await Self.line(from: publisher, startingWith: "ready")
        let subscriber = try Self.peer(
            ["futex-subscribe", fixture.address, channel, "\(count)"] + (blocking ? ["blocking"] : []) + (spin ? ["spin"] : []))
        defer { subscriber.closeStandardInput() }
        _ = try await Self.line(from: subscriber, startingWith: "ready")
        var hostile: ChildProcess?
        if let attack {
            let started = try Self.peer(["doorbell", fixture.address, channel, attack, "120"])
            hostile = started
            _ = try await Self.line(from: started, startingWith: "attacking")
        }
        defer { hostile?.closeStandardInput() }
        // Let the subscriber fall asleep under the attack before the first chunk.
        try await Task.sleep(for: .milliseconds(100))
        _ = try publisher.standardInput?.writeAll(Array("go\n".utf8))
        let published = Self.fields(try await Self.line(from: publisher, startingWith: "published"))
        let received = Self.fields(try await Self.line(from: subscriber, startingWith: "received"))
        var run = Run(attack: (attack ?? "none") + (blocking ? " (readBlocking)" : "") + (spin ? " (spin)" : ""))
        if let hostile {
            _ = try hostile.standardInput?.writeAll(Array("stop\n".utf8))
            run.attackOperations = Self.fields(try await Self.line(from: hostile, startingWith: "attacked"))["attacked"] ?? -1
        }
        run.received = received["received"] ?? -1
        run.gaps = received["gaps"] ?? -1
        run.missed = received["missed"] ?? -1
        run.problems = received["problems"] ?? -1
        run.subscriberCPU = received["cpu_us"] ?? -1
        run.subscriberWall = received["wall_us"] ?? -1
        run.subscriberSleeps = received["sleeps"] ?? -1
        run.latencyP50 = received["latency_p50_us"] ?? -1
        run.latencyP99 = received["latency_p99_us"] ?? -1
        run.latencyMax = received["latency_max_us"] ?? -1
        run.published = published["published"] ?? -1
        run.publishMicroseconds = published["us"] ?? -1
        run.publisherCPU = published["cpu_us"] ?? -1
        run.rings = published["rings"] ?? -1
        run.fruitlessRings = published["fruitless"] ?? -1
        run.heldBack = published["held_back"] ?? -1
        return run
    }

    /// A publisher at 1,000 chunks/s, with collections (a 256 KiB segment holds about
    /// 800 chunks): under every attack the subscriber gets every chunk once, in order,
    /// without gaps, and sleeps most of the time instead of spinning. "spin" is
    /// `Wait.spin` (through `readBlocking`) with its default budget: it spins once per
    /// wait at most, whatever the doorbell does, so it too sleeps most of the time.
    @Test(.timeLimit(.minutes(10)), arguments: ["iterator", "blocking", "spin"])
    func anHonestFutexSubscriberGetsEveryChunkWithoutSpinningWhateverAReaderDoesToTheDoorbell(reader: String) async throws {
        let fixture = try await RegistryFixture()
        let count = Reliability.count(quick: 1000, full: 5000)
        let blocking = reader != "iterator"
        var runs: [Run] = []
        for attack in [nil] + Self.attacks {
            let run = try await Self.run(
                fixture, attack: attack, count: count, size: 256, capacity: 256 << 10, interval: 1000, blocking: blocking, spin: reader == "spin")
            print("doorbell-attack paced \(run)")
            runs.append(run)
            #expect(run.received == count, "\(run)")
            #expect(run.problems == 0, "\(run)")
            #expect(run.gaps == 0, "a subscriber that keeps up misses nothing: \(run)")
            // A spinning reader uses about as much CPU as time passes; one that sleeps
            // between chunks uses a few percent (each wake-up costs tens of µs here).
            #expect(run.cpuShare < 0.5, "the subscriber spins: \(run)")
            // Counted, not timed: a reader that went back to FUTEX_WAIT after every
            // wake-up for nothing slept 70 times per chunk under the wake-up storm (before
            // the pacing); an honest one sleeps about 3 times per chunk (its threads'
            // hand-overs included) or less.
            #expect(run.subscriberSleeps < 10 * count + 1000, "the subscriber is woken for nothing: \(run)")
        }
        Reliability.report(
            "doorbell-attack-paced\(reader == "iterator" ? "" : "-\(reader)")",
            [
                "chunks": count,
                "cpu_percent": runs.map { "\($0.attack.split(separator: " ")[0]):\(String(format: "%.1f", $0.cpuShare * 100))" }.joined(separator: ","),
                "sleeps": runs.map { "\($0.attack.split(separator: " ")[0]):\($0.subscriberSleeps)" }.joined(separator: ","),
            ])
    }

    /// The publisher as fast as it goes (64-byte chunks, no collection), the honest
    /// subscriber reading along: the publisher's rate under each attack beside the
    /// control (a hostile process that only burns CPU) is reported, not asserted, since
    /// two cores shared by three busy processes swing from run to run.
    @Test(.timeLimit(.minutes(10)))
    func thePublishersRateUnderEachAttackIsReported() async throws {
        let fixture = try await RegistryFixture()
        let count = Reliability.count(quick: 100_000, full: 1_000_000)
        var rates: [String] = []
        for attack in [nil, "burn"] + Self.attacks {
            let run = try await Self.run(fixture, attack: attack, count: count, size: 64, capacity: 128 << 20, interval: 0)
            print("doorbell-attack fast \(run)")
            #expect(run.received == count, "\(run)")
            #expect(run.problems == 0 && run.gaps == 0, "\(run)")
            rates.append("\(attack ?? "none"):\(run.publishRate)")
        }
        Reliability.report("doorbell-attack-rate", ["chunks": count, "published_per_s": rates.joined(separator: ",")])
    }
}
