import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// A publisher that scribbles over its own sealed segment (the seals stop everyone
/// else from writing, not the owner's existing mapping). Subscribers, `shmbus cat`
/// and the daemon's Lookup get errors or structurally valid chunks; nothing crashes.
@Suite(.serialized) struct HostileContentTests {
    enum Outcome: String, Sendable {
        case chunks, error, crashed
    }

    /// Reads the channel from its oldest chunk for a moment; what came of it.
    static func subscribe(_ fixture: RegistryFixture) async -> Outcome {
        do {
            let subscriber = try await Subscriber.open(channel: "scribbled", on: .address(fixture.address), options: .init(start: .oldest))
            let reading = Task {
                var count = 0
                for try await _ in subscriber { count += 1 }
                return count
            }
            try await Task.sleep(for: .milliseconds(100))
            subscriber.cancel()
            _ = try await reading.value
            return .chunks
        } catch {
            return .error
        }
    }

    @Test(.timeLimit(.minutes(10))) func aPublisherScribblingOverItsSegmentCrashesNobody() async throws {
        let fixture = try await RegistryFixture()
        let daemon = try #require(fixture.daemon)
        let rounds = Reliability.count(quick: 10, full: 200)
        let seed = UInt64.random(in: 1...UInt64.max)
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["scribble", fixture.address, "scribbled", "\(seed)"],
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
        defer { peer.closeStandardInput() }
        let ready = try await peer.readLine() ?? ""
        let segment = try #require(ready.split(separator: " ").last.map(String.init), "\(ready)")
        let client = try await fixture.client()
        var subscribers: [Outcome: Int] = [:]
        var lookups: [Outcome: Int] = [:]
        var cats: [Outcome: Int] = [:]
        var stats: [Outcome: Int] = [:]
        for round in 0..<rounds {
            _ = try peer.standardInput?.writeAll(Array("scribble\n".utf8))
            #expect(try await peer.readLine() == "scribbled")
            subscribers[await Self.subscribe(fixture), default: 0] += 1
            do {
                _ = try await client.lookup(channel: "scribbled", key: "k\(round % 8)")
                lookups[.chunks, default: 0] += 1
            } catch {
                lookups[.error, default: 0] += 1
            }
            // The command line reads in a process of its own: it must exit, never crash.
            for (command, tally) in [(["cat", "--channel", "scribbled", "--key", "k\(round % 8)", "--output", "/dev/null"], 0), (["stat", segment], 1)] {
                let (status, _, _) = try await fixture.run(command)
                let outcome: Outcome =
                    switch status {
                    case .exited(0): .chunks
                    case .exited: .error
                    default: .crashed
                    }
                if tally == 0 { cats[outcome, default: 0] += 1 } else { stats[outcome, default: 0] += 1 }
                #expect(outcome != .crashed, "shmbus \(command.joined(separator: " ")) ended with \(status) in round \(round)")
            }
            #expect(!daemon.hasExited, "the daemon died in round \(round)")
        }
        // The daemon still serves everyone.
        #expect(try await client.channels().contains { $0.name == "scribbled" })
        Reliability.report(
            "hostile-content",
            [
                "rounds": rounds, "seed": seed, "subscribers": Self.tally(subscribers), "lookups": Self.tally(lookups),
                "cat": Self.tally(cats), "stat": Self.tally(stats), "daemon_alive": !daemon.hasExited,
            ])
    }

    static func tally(_ outcomes: [Outcome: Int]) -> String {
        outcomes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue):\($0.value)" }.joined(separator: ",")
    }
}
