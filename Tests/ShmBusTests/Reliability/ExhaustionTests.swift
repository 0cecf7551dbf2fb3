import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// Clients that try to exhaust the daemon: one registers segments up to its quota, one
/// opens thousands of subscriptions, one floods it with calls. The daemon's memory
/// stays bounded and a bystander is served throughout.
@Suite(.serialized) struct ExhaustionTests {
    @Test(.timeLimit(.minutes(10))) func theDaemonStaysBoundedAndServesOthers() async throws {
        let fixture = try await RegistryFixture()
        let daemon = try #require(fixture.daemon)
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = min(limit.rlim_max, 65536)
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)

        let bystander = try await Publisher.open(channel: "bystander", on: .address(fixture.address))
        try bystander.publish(Array("still here".utf8), key: "k")
        let watcher = try await fixture.client()
        /// The bystander's question, answered right.
        func bystanderServed() async -> Bool {
            guard let found = try? await watcher.lookup(channel: "bystander", key: "k") else { return false }
            return found.length == 10
        }
        let rssStart = Reliability.memoryKiB("VmRSS", of: daemon.pid)
        #expect(await bystanderServed())

        // 1. Registering segments up to the quota, and one more.
        let hog = try await fixture.client()
        var writers: [ChannelWriter] = []
        var refusal: ShmBusError?
        while refusal == nil, writers.count < 100_000 {
            let writer = try ChannelWriter(channel: "hog-\(writers.count)", capacity: 64 << 10)
            do {
                _ = try await hog.registerSegment(channel: writer.channel, fd: writer.current.fileDescriptor)
                writers.append(writer)
            } catch {
                refusal = error
            }
        }
        #expect(refusal?.code == .quotaExceeded, "\(String(describing: refusal))")
        #expect(await bystanderServed(), "served while a client sits at its quota")
        let quotaSegments = writers.count
        hog.connection.close()
        writers.removeAll()

        // 2. Thousands of subscriptions from one connection.
        let subscriptions = Reliability.count(quick: 500, full: 10_000)
        let crowd = try await fixture.connect()
        var subscribers: [Subscriber] = []
        for _ in 0..<subscriptions {
            subscribers.append(try await Subscriber.open(channel: "bystander", connection: crowd, options: .init(start: .oldest)))
        }
        let daemonFDsWithSubscribers = Reliability.openDescriptors(of: daemon.pid)
        #expect(await bystanderServed(), "served while \(subscriptions) subscriptions are open")
        for subscriber in subscribers { subscriber.cancel() }
        subscribers.removeAll()
        crowd.close()

        // 3. A flood of calls, many in flight at once, while the bystander asks.
        let floodCalls = Reliability.count(quick: 20_000, full: 200_000)
        let flooder = try await fixture.client()
        let answered = Lock(0)
        let flood = Task.detached {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<64 {
                    group.addTask {
                        for call in stride(from: worker, to: floodCalls, by: 64) {
                            if call % 2 == 0 {
                                _ = try await flooder.channels()
                            } else {
                                _ = try? await flooder.lookup(channel: "bystander", key: "k")
                            }
                            answered.withLock { $0 += 1 }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        var servedDuringFlood = 0
        var bystanderLatencies: [Duration] = []
        // At least once, however far the flood got before this task was scheduled.
        repeat {
            let start = ContinuousClock.now
            if await bystanderServed() { servedDuringFlood += 1 }
            bystanderLatencies.append(ContinuousClock.now - start)
            try await Task.sleep(for: .milliseconds(5))
        } while answered.withLock({ $0 }) < floodCalls / 2
        try await flood.value
        #expect(servedDuringFlood > 0 && servedDuringFlood == bystanderLatencies.count, "the bystander was answered during the flood")
        #expect(await bystanderServed())

        let peakKiB = Reliability.memoryKiB("VmHWM", of: daemon.pid)
        let rssEnd = Reliability.memoryKiB("VmRSS", of: daemon.pid)
        // Bounded: a registry of a few hundred segments needs a few MiB of its own;
        // what we bound is growth, not the Swift runtime's baseline.
        #expect(peakKiB - rssStart < 128 * 1024, "the daemon grew from \(rssStart) KiB to a peak of \(peakKiB) KiB")
        Reliability.report(
            "exhaustion",
            [
                "quota_segments": quotaSegments, "refusal": refusal?.code.rawValue ?? "none", "subscriptions": subscriptions,
                "daemon_fds_with_subscriptions": daemonFDsWithSubscribers, "flood_calls": floodCalls,
                "bystander_calls_during_flood": servedDuringFlood,
                "bystander_p50": Reliability.milliseconds(Reliability.percentile(bystanderLatencies, 0.5)),
                "bystander_max": Reliability.milliseconds(bystanderLatencies.max() ?? .zero),
                "daemon_rss_start_kib": rssStart, "daemon_peak_rss_kib": peakKiB, "daemon_rss_end_kib": rssEnd,
            ])
        await bystander.close()
    }
}
