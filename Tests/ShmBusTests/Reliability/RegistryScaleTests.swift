import DBus
import Foundation
import Locking
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// The registry at thousands of segments (issue 13): registering must not slow down
/// as the registry grows, an owner that leaves must have every segment removed and
/// announced within the contract's 1 s however many it had (10,000 in the full form),
/// and the daemon must give back the memory that thousands of channels and a flood
/// took. Timings are reported, never asserted; that includes the contract's 1 s in the full
/// form's 10,000, reported as `leave_10000_within_1s`.
@Suite(.serialized) struct RegistryScaleTests {
    // One user (root) holds up to 18,000 segments in the full form: past the default
    // per-user quota, and the registry-wide limit stays above it as the daemon requires.
    static let daemonArguments = [
        "--max-segments-per-connection", "20000", "--max-segments-per-user", "40000", "--max-segments", "80000",
    ]

    /// Registers `count` segments, one per channel `prefix-i`, `concurrency` at a time
    /// (1: one after the other, as a publisher does); returns how long it took.
    static func register(_ count: Int, prefix: String, on client: RegistryClient, concurrency: Int = 1) async throws -> Duration {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    for index in stride(from: lane, to: count, by: concurrency) {
                        // The writer (and its descriptors) goes once registered: the
                        // registry holds its own read-only descriptor.
                        let writer = try ChannelWriter(channel: "\(prefix)-\(index)", capacity: 16 << 10)
                        _ = try await client.registerSegment(channel: writer.channel, fd: writer.current.fileDescriptor)
                    }
                }
            }
            try await group.waitForAll()
        }
        return ContinuousClock.now - start
    }

    /// Closes `client`'s connection and returns the time until the registry announced
    /// the removal of all `count` segments of channels `prefix-…` (`SegmentRemoved`,
    /// timed where it arrives), or nil after 60 s.
    static func leave(_ client: RegistryClient, count: Int, prefix: String, watcher: RegistryClient) async throws -> Duration? {
        let events = try await watcher.events()
        // The stream's first event proves the match rule is in place; a lookup that
        // fails is enough of a round trip for that.
        _ = try? await watcher.lookup(channel: "\(prefix)-0", key: "none")
        let start = ContinuousClock.now
        client.connection.close()
        return try await withThrowingTaskGroup(of: Duration?.self) { group in
            group.addTask {
                var removed = 0
                for try await event in events {
                    if case .segmentRemoved(_, let channel, _) = event, channel.hasPrefix("\(prefix)-") { removed += 1 }
                    if removed == count { return ContinuousClock.now - start }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                return nil
            }
            let result = try await group.next() ?? nil
            group.cancelAll()
            return result
        }
    }

    static func segmentCount(_ client: RegistryClient) async throws -> Int {
        try await client.segments().count
    }

    @Test(.timeLimit(.minutes(20))) func removalAndRegistrationStayLinear() async throws {
        let fixture = try await RegistryFixture(daemonArguments: Self.daemonArguments)
        let watcher = try await fixture.client()
        var figures: [(String, Any)] = []
        func ms(_ duration: Duration?) -> String { duration.map(Reliability.milliseconds) ?? "timeout" }

        // The quick form: 1,000 where the full one has the 2,000.
        let n = Reliability.count(quick: 1_000, full: 2_000)
        // An owner of 256 (the default quota), then of n, leaves with few held.
        var owner = try await fixture.client()
        _ = try await Self.register(256, prefix: "a", on: owner, concurrency: 4)
        figures.append(("leave_256", ms(try await Self.leave(owner, count: 256, prefix: "a", watcher: watcher))))
        owner = try await fixture.client()
        figures.append(("register_\(n)_with_0_held", ms(try await Self.register(n, prefix: "b", on: owner))))
        figures.append(("leave_\(n)", ms(try await Self.leave(owner, count: n, prefix: "b", watcher: watcher))))

        // n held by another client; n more registered, then their owner leaves.
        let holder = try await fixture.client()
        _ = try await Self.register(n, prefix: "c", on: holder, concurrency: 4)
        owner = try await fixture.client()
        figures.append(("register_\(n)_with_\(n)_held", ms(try await Self.register(n, prefix: "d", on: owner))))
        figures.append(("leave_\(n)_among_\(n)", ms(try await Self.leave(owner, count: n, prefix: "d", watcher: watcher))))
        #expect(try await Self.segmentCount(watcher) == n)

        if Reliability.isFull {
            // 8,000 held: 2,000 more registered one after the other.
            let more = try await fixture.client()
            _ = try await Self.register(6_000, prefix: "e", on: more, concurrency: 4)
            owner = try await fixture.client()
            figures.append(("register_2000_with_8000_held", ms(try await Self.register(2_000, prefix: "f", on: owner))))
            figures.append(("leave_2000_among_8000", ms(try await Self.leave(owner, count: 2_000, prefix: "f", watcher: watcher))))
            figures.append(("leave_6000_among_2000", ms(try await Self.leave(more, count: 6_000, prefix: "e", watcher: watcher))))
            // The contract at 10,000: one owner's segments, all removed and announced
            // within 1 s of its leaving (with 2,000 others held).
            owner = try await fixture.client()
            figures.append(("register_10000_4_at_a_time", ms(try await Self.register(10_000, prefix: "g", on: owner, concurrency: 4))))
            let leaving = try await Self.leave(owner, count: 10_000, prefix: "g", watcher: watcher)
            figures.append(("leave_10000_among_2000", ms(leaving)))
            figures.append(("leave_10000_within_1s", leaving.map { $0 < .seconds(1) } ?? false))
            #expect(leaving != nil, "the 10,000 segments were not all announced removed within 60 s")
        }
        #expect(try await Self.segmentCount(watcher) == n)
        Reliability.report("registry-scale", figures)
    }

    /// Floods the daemon with `calls` calls pipelined on one connection, from a peer
    /// process (see FairLoadTests).
    static func flood(_ fixture: RegistryFixture, calls: Int) async throws {
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["flood", fixture.address, "nothing", "k", "1", "\(calls)"],
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
        defer { peer.closeStandardInput() }
        #expect(try await peer.readLine() == "ready")
        _ = try peer.standardInput?.writeAll(Array("go\n".utf8))
        let summary = try await peer.readLine() ?? ""
        #expect(summary.hasPrefix("flooded \(calls) "), "\(summary)")
    }

    @Test(.timeLimit(.minutes(10))) func memoryTakenByChannelsAndAFloodIsGivenBack() async throws {
        let fixture = try await RegistryFixture(daemonArguments: Self.daemonArguments)
        let daemon = try #require(fixture.daemon)
        let watcher = try await fixture.client()
        func rss() async -> Int {
            // What the daemon does after the last reply (withdrawing objects, and the
            // trim it looks for once a second) is given a moment.
            try? await Task.sleep(for: .milliseconds(1_500))
            return Reliability.memoryKiB("VmRSS", of: daemon.pid)
        }
        // Warm-up: whatever the first calls allocate for good (metadata, caches) is not
        // what this test is about.
        var owner = try await fixture.client()
        _ = try await Self.register(50, prefix: "warm", on: owner)
        _ = try await Self.leave(owner, count: 50, prefix: "warm", watcher: watcher)
        try await Self.flood(fixture, calls: 2_000)
        let start = await rss()
        var figures: [(String, Any)] = [("rss_start_kib", start)]
        for round in 1...2 {
            owner = try await fixture.client()
            _ = try await Self.register(2_000, prefix: "ch\(round)", on: owner, concurrency: 4)
            figures.append(("rss_with_2000_channels_\(round)_kib", await rss()))
            _ = try await Self.leave(owner, count: 2_000, prefix: "ch\(round)", watcher: watcher)
            #expect(try await Self.segmentCount(watcher) == 0)
            figures.append(("rss_after_2000_channels_\(round)_kib", await rss()))
            try await Self.flood(fixture, calls: 20_000)
            figures.append(("rss_after_flood_\(round)_kib", await rss()))
        }
        let end = Reliability.memoryKiB("VmRSS", of: daemon.pid)
        figures.append(("rss_end_above_start_kib", end - start))
        figures.append(("peak_kib", Reliability.memoryKiB("VmHWM", of: daemon.pid)))
        Reliability.report("memory-given-back", figures)
    }
}
