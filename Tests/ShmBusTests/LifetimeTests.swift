import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// Segments live as long as their owner, or their ttl when persistent; the daemon is
/// started by D-Bus activation; publishers survive a registry restart.
@Suite struct LifetimeTests {
    /// Starts the test peer publishing `count` chunks on `channel`; returns it once it
    /// has published them.
    static func startPeer(_ fixture: RegistryFixture, channel: String, count: Int = 10, persistent: Bool = false) async throws -> ChildProcess {
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"),
            ["publish", fixture.address, channel, "\(count)", "64", "\(1 << 20)"] + (persistent ? ["persistent"] : []),
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
        // Wait for "published …".
        var output = ""
        while !output.hasPrefix("published"), let line = try await peer.readLine() { output = line }
        #expect(output.hasPrefix("published \(count)"), "peer said: \(output)")
        return peer
    }

    @Test func killingTheOwnerRemovesItsSegmentsWithinOneSecond() async throws {
        let fixture = try await RegistryFixture()
        let watcher = try await fixture.client()
        let events = try await watcher.events()
        let peer = try await Self.startPeer(fixture, channel: "dies")
        let persistentPeer = try await Self.startPeer(fixture, channel: "stays", persistent: true)
        #expect(try await watcher.channels().map(\.name).sorted() == ["dies", "stays"])
        let segment = try #require(try await watcher.channels().first { $0.name == "dies" }?.currentSegment)

        // The signal's arrival is timed on the connection's loop thread, not by a task:
        // with the whole suite running, the test process's two pool threads may be busy
        // with other tests for a while, and that is not the registry's delay.
        let heard = Lock<ContinuousClock.Instant?>(nil)
        let timing = try await watcher.connection.onSignal(
            matching: MatchRule(
                sender: ShmBusProtocol.registryName, interface: Registry1.name, member: "SegmentRemoved",
                path: ShmBusProtocol.registryPath)
        ) { message in
            if message.body == [.string(segment), .string("dies"), .string("owner-exited")] {
                heard.withLock { $0 = $0 ?? .now }
            }
        }
        let killed = ContinuousClock.now
        peer.signal(SIGKILL)
        persistentPeer.signal(SIGKILL)
        let removed = try await first(events) { event in
            if case .segmentRemoved(segment, "dies", "owner-exited") = event { true } else { false }
        }
        // Both handlers see the same message on the loop thread, one after the other:
        // the stream's may resume this task before the timing one has run.
        _ = await Reliability.waitUntil(.seconds(60)) { heard.withLock { $0 } != nil }
        timing.cancel()
        let elapsed = try #require(heard.withLock { $0 }, "SegmentRemoved(owner-exited) was announced") - killed
        #expect(removed != nil)
        Reliability.expectLatency(elapsed, within: .seconds(1), "SegmentRemoved(owner-exited)")
        print("owner-exited announced \(elapsed) after SIGKILL")
        _ = await peer.exit()
        _ = await persistentPeer.exit()
        // The persistent segment stays, readable, and its channel has no owner.
        let channels = try await watcher.channels()
        #expect(channels.map(\.name) == ["stays"])
        #expect(channels.first?.owner == "")
        let (fd, _) = try await watcher.openSegment(try #require(channels.first?.currentSegment))
        let reader = try SegmentReader(fd: fd)
        let chunks = try reader.allChunks()
        #expect(chunks.count == 10)
        #expect(chunks.allSatisfy(TestPayload.check))
    }

    /// A channel is owned by the connection that registered on it last, even once that
    /// one withdrew its segment again; when it leaves, the channel is nobody's and the
    /// next publisher of its user continues it. The registry finds what a departing
    /// connection owned in an index, not by walking every channel: a channel owned
    /// without a segment of its own is the case an index of segments alone would miss.
    @Test func aChannelIsNobodysOnceTheConnectionThatLastContinuedItLeaves() async throws {
        let fixture = try await RegistryFixture()
        let watcher = try await fixture.client()
        func owner() async throws -> String? { try await watcher.channels().first { $0.name == "edge" }?.owner }
        // The first publisher leaves a persistent segment behind.
        let first = try await fixture.client()
        let writer = try makeSegment(channel: "edge", chunks: [("k", [1])])
        let kept = try await first.registerSegment(channel: "edge", fd: writer.current.fileDescriptor, options: .init(persistent: true)).segment
        first.connection.close()
        #expect(try await Reliability.waitUntil(.seconds(60)) { try await owner() == "" } != nil)
        // A second continues it and withdraws its segment again, staying connected: the
        // channel stays its own, and the departed publisher's segment current.
        let second = try await fixture.client()
        let next = try writer.collectGarbage().new
        let continued = try await second.registerSegment(channel: "edge", fd: next.fileDescriptor, options: .init(replaces: kept)).segment
        try await second.unregisterSegment(continued)
        #expect(try await owner() == second.connection.uniqueName)
        #expect(try await watcher.channels().first { $0.name == "edge" }?.currentSegment == kept)
        let third = try await fixture.client()
        let refused = await #expect(throws: ShmBusError.self) {
            _ = try await third.registerSegment(channel: "edge", fd: next.fileDescriptor, options: .init(replaces: kept))
        }
        #expect(refused?.code == .accessDenied)
        // Once the second left, the channel is nobody's, and the third continues it.
        second.connection.close()
        #expect(try await Reliability.waitUntil(.seconds(60)) { try await owner() == "" } != nil)
        _ = try await third.registerSegment(channel: "edge", fd: next.fileDescriptor, options: .init(replaces: kept))
        #expect(try await owner() == third.connection.uniqueName)
    }

    @Test func persistentSegmentsExpireAfterTheirTTL() async throws {
        let fixture = try await RegistryFixture()
        let watcher = try await fixture.client()
        let events = try await watcher.events()
        // Two publishers that exit at once: one persistent for 2 s, one for as long as
        // the daemon runs.
        let (s1, out1, err1) = try await fixture.run(["publish", "--channel", "ttl", "--key", "k", "--persistent", "--ttl", "2", "-"])
        #expect(s1 == .exited(0), "\(err1)")
        let (s2, _, err2) = try await fixture.run(["publish", "--channel", "forever", "--key", "k", "--persistent", "-"])
        #expect(s2 == .exited(0), "\(err2)")
        let segment = try #require(out1.split(separator: " ").dropFirst().first.map(String.init))
        let expired = try await first(events) { event in
            if case .segmentRemoved(segment, "ttl", "expired") = event { true } else { false }
        }
        #expect(expired != nil)
        // The one without a ttl outlives its publisher and the other one.
        let channels = try await watcher.channels()
        #expect(channels.map(\.name) == ["forever"])
        #expect(channels.first?.owner == "")
        #expect(try await watcher.lookup(channel: "forever", key: "k").length == 0)
    }

    @Test func theFirstCallActivatesTheDaemon() async throws {
        let services = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-services-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: services, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: services) }
        let shmbus = BuiltProducts.path("shmbus")
        let (status, out, err) = try await BuiltProducts.run(shmbus, ["install-service", "--directory", services.path, "--exec", shmbus])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("Exec=\(shmbus) daemon"))
        let file = try String(contentsOf: services.appendingPathComponent("org.shmbus.Registry1.service"), encoding: .utf8)
        #expect(file.contains("Name=org.shmbus.Registry1") && file.contains("Exec=\(shmbus) daemon"))

        let fixture = try await RegistryFixture(startDaemon: false, serviceDirectories: [services.path])
        let client = try await fixture.client()
        #expect(try await client.connection.nameOwner(of: ShmBusProtocol.registryName) == nil)
        // No daemon runs; this call makes the bus start one.
        #expect(try await client.channels().isEmpty)
        let owner = try #require(try await client.connection.nameOwner(of: ShmBusProtocol.registryName))
        // Stop the activated daemon the way a service manager would.
        let pid = try await client.connection.call(
            destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
            method: "GetConnectionUnixProcessID", [.string(owner)]
        ).decode(UInt32.self)
        kill(pid_t(pid), SIGTERM)
        // (A bound against a daemon that ignores SIGTERM, not a limit on its shutdown.)
        let deadline = ContinuousClock.now + .seconds(60)
        while try await client.connection.nameOwner(of: ShmBusProtocol.registryName) != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await client.connection.nameOwner(of: ShmBusProtocol.registryName) == nil, "SIGTERM stops the daemon")
    }

    @Test func publishersRegisterAgainWhenTheDaemonRestarts() async throws {
        let fixture = try await RegistryFixture(startDaemon: false)
        var daemon = try RegistryFixture.startDaemon(fixture.shmbus, address: fixture.address)
        try await fixture.waitForRegistry()
        let publisher = try await Publisher.open(channel: "restart", on: .address(fixture.address))
        let subscriber = try await Subscriber.open(channel: "restart", on: .address(fixture.address), options: .init(start: .oldest))
        var iterator = subscriber.makeAsyncIterator()
        try publisher.publish(Array("before".utf8))
        guard case .chunk(let before)? = try await iterator.next() else { Issue.record("no chunk before the restart"); return }
        #expect(before.sequence == 1)

        daemon.signal(SIGKILL)
        _ = await daemon.exit()
        let watcher = try await fixture.client()
        let down = await #expect(throws: ShmBusError.self) { _ = try await watcher.channels() }
        #expect(down?.code == .registryUnavailable)
        try publisher.publish(Array("while down".utf8))
        daemon = try RegistryFixture.startDaemon(fixture.shmbus, address: fixture.address)
        defer { daemon.signal(SIGKILL) }
        try await fixture.waitForRegistry()
        // The publisher re-registers by itself. (How soon is DaemonRestartTests'
        // measurement; the deadline here only ends a publisher that never does.)
        let restarted = ContinuousClock.now
        let deadline = restarted + .seconds(60)
        var channels: [ChannelInfo] = []
        while channels.isEmpty, ContinuousClock.now < deadline {
            channels = (try? await watcher.channels()) ?? []
            if channels.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        print("re-registered \(ContinuousClock.now - restarted) after the restarted registry took its name")
        #expect(channels.map(\.name) == ["restart"], "re-registered")
        #expect(channels.first?.owner == publisher.connection.uniqueName)
        #expect(channels.first?.currentSegment == publisher.currentSegment)
        try publisher.publish(Array("after".utf8))
        var got: [String] = []
        while got.count < 2, case .chunk(let chunk)? = try await iterator.next() {
            got.append(String(decoding: chunk.bytes, as: UTF8.self))
        }
        #expect(got == ["while down", "after"], "the subscriber continues from its last sequence")
        subscriber.cancel()
        await publisher.close()
    }
}
