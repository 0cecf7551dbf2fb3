import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// A publisher killed with SIGKILL at random points of its publish loop, again and
/// again: subscribers see only whole, valid chunks with contiguous sequences up to the
/// last one committed; the registry drops the dead publisher's segments within 1 s;
/// nothing is left in /dev/shm and the daemon holds no more descriptors than before.
@Suite(.serialized) struct PublisherKillTests {
    @Test(.timeLimit(.minutes(10))) func publishersKilledAtRandomPointsLeaveNothingBehind() async throws {
        let fixture = try await RegistryFixture()
        let daemon = try #require(fixture.daemon)
        let registry = try await fixture.client()
        let shmBefore = Reliability.devShm()
        let fdsBefore = Reliability.openDescriptors(of: daemon.pid)
        let kills = Reliability.count(quick: 3, full: 50)
        var seed = UInt64.random(in: 1...UInt64.max)
        if let fixed = ProcessInfo.processInfo.environment["SHMBUS_RELIABILITY_SEED"].flatMap(UInt64.init) { seed = fixed }
        var random = SplitMix(seed: seed)

        // When each channel's last segment left, timed on the connection's loop thread
        // (as in LifetimeTests) so that a busy test process does not count as the
        // registry's delay.
        let lastRemoval = Lock<[String: ContinuousClock.Instant]>([:])
        let timing = try await registry.connection.onSignal(
            matching: MatchRule(
                sender: ShmBusProtocol.registryName, interface: Registry1.name, member: "SegmentRemoved",
                path: ShmBusProtocol.registryPath)
        ) { message in
            guard message.body.count == 3, case .string(let channel) = message.body[1], message.body[2] == .string("owner-exited")
            else { return }
            lastRemoval.withLock { $0[channel] = .now }
        }
        defer { timing.cancel() }
        var removals: [Duration] = []
        var delivered = 0
        var missed: UInt64 = 0
        var diedMidCollection = 0
        for round in 0..<kills {
            let channel = "victim-\(round)"
            let peer = try ChildProcess(
                BuiltProducts.path("shmbus-test-peer"),
                ["loop", fixture.address, channel, "8192", "\(1 << 20)", "\(random.next())"],
                stdin: .pipe, stdout: .pipe, stderr: .inherit)
            // `loop` publishes until killed: should the round fail before its kill, the
            // peer must not outlive it (it holds the suite's stderr, so `swift test`
            // would wait for it).
            defer { peer.signal(SIGKILL) }
            let ready = try await peer.readLine() ?? ""
            try #require(ready.hasPrefix("ready"), "the peer did not start: \(ready)")
            let subscriber = try await Subscriber.open(
                channel: channel, on: .address(fixture.address), options: .init(start: .oldest))
            let audit = Lock(StreamAudit())
            let reading = Task {
                do {
                    for try await event in subscriber { audit.withLock { $0.record(event) } }
                } catch {
                    // The publisher died between registering a successor and our
                    // following it: the successor left the registry with its owner.
                }
            }

            // Somewhere in the loop: while publishing, collecting, or registering.
            try await Task.sleep(for: .microseconds(Int64(random.next() % 250_000)))
            let killed = ContinuousClock.now
            peer.signal(SIGKILL)
            let removal = try await Reliability.waitUntil(.seconds(60)) { try await registry.segments().allSatisfy { $0.channel != channel } }
            _ = await peer.exit()
            try #require(removal != nil, "round \(round): the dead publisher's segments are still registered after 60 s")
            // The signal handler runs on the loop thread, maybe just after the list changed.
            _ = await Reliability.waitUntil(.seconds(60)) { lastRemoval.withLock { $0[channel] } != nil }
            let elapsed = try #require(lastRemoval.withLock { $0[channel] }, "round \(round): no SegmentRemoved") - killed
            removals.append(elapsed)
            Reliability.expectLatency(elapsed, within: .seconds(1), "round \(round): segments removed")

            // The subscriber still holds its mapping: it reads to the last committed chunk.
            let caughtUp = await Reliability.waitUntil(.seconds(60)) { subscriber.progress?.backlog == 0 }
            let progress = try #require(subscriber.progress)
            subscriber.cancel()
            reading.cancel()
            await reading.value
            let seen = audit.withLock { $0 }
            #expect(caughtUp != nil, "round \(round): stuck at \(progress)")
            #expect(seen.problems.isEmpty, "round \(round): \(seen.problems.prefix(5))")
            #expect(seen.last == progress.committed, "round \(round): accounted to \(seen.last), committed \(progress.committed)")
            delivered += seen.delivered
            missed += seen.missed
            if progress.segmentRetired { diedMidCollection += 1 }
        }

        // Everything the publishers held went with them.
        let fdsReturned = await Reliability.waitUntil(.seconds(60)) { Reliability.openDescriptors(of: daemon.pid) <= fdsBefore }
        let fdsAfter = Reliability.openDescriptors(of: daemon.pid)
        let shmAfter = Reliability.devShm()
        #expect(fdsReturned != nil, "daemon descriptors: \(fdsBefore) before, \(fdsAfter) after")
        #expect(shmAfter == shmBefore, "/dev/shm gained \(shmAfter.subtracting(shmBefore))")
        Reliability.report(
            "publisher-sigkill",
            [
                "kills": kills, "seed": seed, "chunks_delivered": delivered, "chunks_reported_missed": missed,
                "killed_mid_collection": diedMidCollection,
                "removal_p50": Reliability.milliseconds(Reliability.percentile(removals, 0.5)),
                "removal_max": Reliability.milliseconds(removals.max() ?? .zero),
                "daemon_fds_before": fdsBefore, "daemon_fds_after": fdsAfter,
                "dev_shm_new_entries": shmAfter.subtracting(shmBefore).count,
            ])
    }
}

/// splitmix64: reproducible random numbers from a printed seed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
