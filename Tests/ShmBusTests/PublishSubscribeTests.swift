import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

@Suite struct PublishSubscribeTests {
    /// Starts the test peer publishing `count` chunks of `size` bytes into segments of
    /// `capacity` bytes; returns it and a task collecting its stdout.
    static func peer(_ fixture: RegistryFixture, channel: String, count: Int, size: Int, capacity: Int, waitForGo: Bool = false) throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"),
            ["publish", fixture.address, channel, "\(count)", "\(size)", "\(capacity)"] + (waitForGo ? ["wait"] : []),
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
    }

    /// Reads the peer's stdout up to its "published" line.
    static func publishedLine(_ peer: ChildProcess) async throws -> String {
        while let line = try await peer.readLine() {
            if line.hasPrefix("published") { return line }
        }
        return ""
    }

    @Test func aSubscriberReceivesOneHundredThousandChunksFromAnotherProcess() async throws {
        let fixture = try await RegistryFixture()
        let count = 100_000
        // The subscriber waits for the channel, then reads from the oldest chunk.
        async let subscribing = Subscriber.open(
            channel: "stream", on: .address(fixture.address), options: .init(start: .oldest, waitForChannel: .seconds(60)))
        let started = ContinuousClock.now
        let peer = try Self.peer(fixture, channel: "stream", count: count, size: 64, capacity: 64 << 20)
        defer { peer.closeStandardInput() }
        let subscriber = try await subscribing
        var next: UInt64 = 1
        var bad = 0
        var gaps = 0
        for try await event in subscriber {
            switch event {
            case .chunk(let chunk):
                if chunk.sequence != next || !TestPayload.check(chunk) { bad += 1 }
                next = chunk.sequence + 1
            case .gap:
                gaps += 1
            case .publisherLeft:
                Issue.record("the publisher is still there")
            }
            if next > UInt64(count) { break }
        }
        let line = try await Self.publishedLine(peer)
        // At least as long as the publishing took (the peer's start-up included).
        let elapsed = ContinuousClock.now - started
        let fields = line.split(separator: " ")
        let signalsSent = fields.count >= 4 ? Int(fields[3]) ?? -1 : -1
        let stats = subscriber.statistics
        print("100,000 chunks: publisher sent \(signalsSent) Committed signals in at most \(elapsed); subscriber received \(stats.signals), ignored \(stats.ignoredSignals)")
        #expect(bad == 0, "every chunk in order, none duplicated, checksums valid")
        #expect(gaps == 0)
        #expect(next == UInt64(count) + 1)
        // Coalescing: at most one signal per minimum interval, plus the first, the last
        // flush and the registration's announcement. That is the notifier's promise
        // however fast the publisher went: a fixed share of the chunks (it was "fewer
        // than one in ten") depends on how fast a loaded machine lets it publish. Here
        // that is a few hundred signals; one per chunk would be 100,000.
        let allowed = Int(elapsed / Publisher.Options().minimumSignalInterval) + 3
        #expect(signalsSent > 0 && signalsSent <= allowed && signalsSent < count, "coalescing: \(signalsSent) signals for \(count) chunks in at most \(elapsed), allowed \(allowed)")
        #expect(stats.signals <= UInt64(signalsSent))
        subscriber.cancel()
    }

    /// On either bus daemon (the reference one and dbus-broker): the same registry,
    /// signals, match rules and owner checks.
    @Test(arguments: PrivateBus.Daemon.both)
    func subscribersFollowGarbageCollection(on bus: PrivateBus.Daemon) async throws {
        let fixture = try await RegistryFixture(busDaemon: bus)
        // 20,000 chunks of 1 KiB through 256 KiB segments: about a hundred collections.
        // The peer registers the channel and waits; the subscriber opens; then the peer
        // publishes, so every collection happens while the subscription runs.
        let peer = try Self.peer(fixture, channel: "gc2", count: 20_000, size: 1024, capacity: 256 << 10, waitForGo: true)
        defer { peer.closeStandardInput() }
        let reader = try await Subscriber.open(
            channel: "gc2", on: .address(fixture.address), options: .init(start: .sequence(1), waitForChannel: .seconds(60)))
        _ = try peer.standardInput?.writeAll(Array("go\n".utf8))
        var delivered = 0
        var missed: UInt64 = 0
        var last: UInt64 = 0
        var valid = true
        for try await event in reader {
            switch event {
            case .chunk(let chunk):
                valid = valid && TestPayload.check(chunk) && chunk.sequence > last
                last = chunk.sequence
                delivered += 1
            case .gap(let n, _):
                missed += n
            case .publisherLeft:
                Issue.record("the publisher is still there")
            }
            if last >= 20_000 { break }
        }
        let stats = reader.statistics
        print("GC run: delivered \(delivered), missed \(missed), segments followed \(stats.segmentsFollowed)")
        #expect(valid)
        #expect(UInt64(delivered) + missed == 20_000, "every sequence delivered or reported missing")
        // How far the subscriber keeps up depends on the machine's load: it follows every
        // generation when it does, jumps (reporting the gap) when it does not.
        #expect(stats.segmentsFollowed >= 1, "the subscriber followed the collections")
        reader.cancel()
    }

    @Test(arguments: PrivateBus.Daemon.both)
    func spoofedCommittedSignalsAreIgnored(on bus: PrivateBus.Daemon) async throws {
        let fixture = try await RegistryFixture(busDaemon: bus)
        let publisher = try await Publisher.open(channel: "spoof", on: .address(fixture.address))
        let subscriber = try await Subscriber.open(channel: "spoof", on: .address(fixture.address), options: .init(start: .now))
        let spoofer = try await fixture.connect()
        for _ in 0..<20 {
            try spoofer.emit(
                path: ShmBusProtocol.publisherPath, interface: Publisher1.name, member: "Committed",
                [.string("spoof"), .string(publisher.currentSegment), .uint64(1), .uint64(4096), .uint64(1 << 30), .uint64(1), .uint64(99)])
        }
        try publisher.publish(Array("genuine".utf8))
        var iterator = subscriber.makeAsyncIterator()
        guard case .chunk(let chunk)? = try await iterator.next() else {
            Issue.record("no chunk")
            return
        }
        #expect(String(decoding: chunk.bytes, as: UTF8.self) == "genuine")
        #expect(chunk.sequence == 1)
        // The spoofed signals arrived and were counted as ignored, and the genuine one
        // counted. The chunk may have been read before its signal came (it was committed
        // before the first next()), and signals from two connections arrive in no fixed
        // order: wait for both counts (the deadline only ends a wait for signals that
        // never come).
        let deadline = ContinuousClock.now + .seconds(60)
        while subscriber.statistics.ignoredSignals < 20 || subscriber.statistics.signals < 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(subscriber.statistics.ignoredSignals == 20)
        #expect(subscriber.statistics.signals >= 1)
        // Spoofed registry calls are refused too.
        let spoofClient = RegistryClient(connection: spoofer)
        let denied = await #expect(throws: ShmBusError.self) { try await spoofClient.unregisterSegment(publisher.currentSegment) }
        #expect(denied?.code == .accessDenied)
        subscriber.cancel()
        await publisher.close()
    }

    @Test func cancellingASubscriberRemovesItsMatchRules() async throws {
        // dbus-daemon's Debug.Stats counts the rules; dbus-broker has no such interface.
        let fixture = try await RegistryFixture(busDaemon: .dbusDaemon)
        let publisher = try await Publisher.open(channel: "cancel", on: .address(fixture.address))
        let shared = try await fixture.connect()
        let observer = try await fixture.connect()
        func matchRules() async throws -> UInt32 {
            let reply = try await observer.call(
                destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus.Debug.Stats",
                method: "GetConnectionStats", [.string(shared.uniqueName)])
            return try reply.decode([String: DBusVariant].self).decode("MatchRules", as: UInt32.self) ?? 0
        }
        let before = try await matchRules()
        let subscriber = try await Subscriber.open(channel: "cancel", connection: shared)
        let during = try await matchRules()
        #expect(during > before)
        subscriber.cancel()
        var after = try await matchRules()
        let deadline = ContinuousClock.now + .seconds(60)
        while after != before, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            after = try await matchRules()
        }
        print("match rules: \(before) before, \(during) while subscribed, \(after) after cancel")
        #expect(after == before)
        #expect(shared.isConnected, "a shared connection stays open")
        await publisher.close()
    }

    @Test func theCommandLineRoundTripsThreeHundredMiBByteExact() async throws {
        let fixture = try await RegistryFixture()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.bin")
        let output = dir.appendingPathComponent("out.bin")
        // 300 blocks of 1 MiB: one random block, each copy stamped with its index.
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var generator = SystemRandomNumberGenerator()
        block.withUnsafeMutableBytes { buffer in
            for i in buffer.bindMemory(to: UInt64.self).indices { buffer.bindMemory(to: UInt64.self)[i] = generator.next() }
        }
        var bytes = Data(capacity: 300 << 20)
        for index in 0..<300 {
            withUnsafeBytes(of: UInt64(index)) { stamp in block.replaceSubrange(0..<8, with: stamp) }
            bytes.append(contentsOf: block)
        }
        try bytes.write(to: input)
        // Publish persistently in one process, which then exits…
        let (published, out, err) = try await fixture.run(["publish", "--channel", "blobs", "--key", "big", "--persistent", input.path])
        #expect(published == .exited(0), "\(err)")
        #expect(out.contains("length \(300 << 20) sequence 1"))
        // …and read it back in another.
        let (catted, _, catErr) = try await fixture.run(["cat", "--channel", "blobs", "--key", "big", "--output", output.path])
        #expect(catted == .exited(0), "\(catErr)")
        let back = try Data(contentsOf: output)
        #expect(back.count == bytes.count)
        let same = back.withUnsafeBytes { a in bytes.withUnsafeBytes { b in a.count == b.count && memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
        #expect(same, "byte-exact")
        // Errors are one line and a distinct exit code.
        let (missing, _, missingErr) = try await fixture.run(["cat", "--channel", "blobs", "--key", "nope"])
        #expect(missing == .exited(66))
        #expect(missingErr.split(separator: "\n").count <= 2 && missingErr.contains("no live chunk with key 'nope'"))
        let (listed, listing, _) = try await fixture.run(["ls", "--json"])
        #expect(listed == .exited(0))
        #expect(listing.contains("\"name\":\"blobs\""))
    }

    @Test func thePythonExampleReceivesAndVerifiesChunks() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "py/frames", on: .address(fixture.address))
        try publisher.publish(Array("frame one".utf8), key: "latest")
        try publisher.publish(Array("frame two".utf8), key: "latest")
        try publisher.publish([UInt8](repeating: 0xAB, count: 100_000))
        let script = BuiltProducts.repositoryRoot.appendingPathComponent("examples/python/subscriber.py").path
        let (status, out, err) = try await BuiltProducts.run(
            "/usr/bin/python3", [script, "py/frames", "--bus", fixture.address, "--from", "oldest", "--count", "2"])
        #expect(status == .exited(0), "\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        // "frame one" is obsolete (same key), so the subscriber sees sequences 2 and 3.
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("sequence 2 key latest length 9 sha256 ") == true)
        #expect(lines.first?.hasSuffix("0151cccab889b76f154222d08193214e74768bef6508b8bb6e2a37e64373edee") == true, "sha256 of 'frame two': \(lines)")
        #expect(lines.last?.hasPrefix("sequence 3 key - length 100000") == true)
        await publisher.close()
    }
}
