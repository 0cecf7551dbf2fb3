import DBus
import Foundation
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// A channel is one history whoever writes it: a publisher that takes a channel whose
/// publisher left continues it (next generation, the live chunks carried over,
/// sequences after the last), and the channel holds at most two segments.
@Suite struct LineageTests {
    /// One persistent one-shot publish, as `shmbus publish --persistent` makes it.
    static func publishOnce(_ fixture: RegistryFixture, channel: String, key: String, bytes: [UInt8]) async throws -> PublishedChunk {
        var options = Publisher.Options()
        options.capacity = try #require(SegmentLayout.capacity(forOneChunkOf: UInt64(bytes.count), keyLength: key.utf8.count))
        options.persistent = true
        options.replacingKeys = [key]
        let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
        let chunk = try publisher.publish(bytes, key: key)
        await publisher.close()
        return chunk
    }

    @Test(.timeLimit(.minutes(5))) func persistentOneShotPublishesOfOneKeyHoldTwoSegmentsAtMost() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        let count = Reliability.count(quick: 150, full: 1_000)
        let size = 100_000
        var largestTotal: UInt64 = 0
        var mostSegments = 0
        for index in 0..<count {
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: size)
            let chunk = try await Self.publishOnce(fixture, channel: "shots", key: "latest", bytes: bytes)
            #expect(chunk.sequence == UInt64(index + 1), "one history: sequences continue across publishers")
            #expect(chunk.generation == UInt64(index + 1), "and generations")
            let segments = try await client.segments(of: "shots")
            mostSegments = max(mostSegments, segments.count)
            largestTotal = max(largestTotal, try await ShmBusProtocol.registry(on: client.connection).totalBytes)
        }
        let perSegment = try #require(SegmentLayout.capacity(forOneChunkOf: UInt64(size), keyLength: 6))
        Reliability.report(
            "one-key-lineage",
            ["publishes": count, "chunk_bytes": size, "most_segments": mostSegments, "largest_total_bytes": largestTotal,
             "segment_bytes": perSegment])
        #expect(mostSegments <= 2)
        #expect(largestTotal <= 2 * perSegment, "two segments, each the chunk and its header, rounded to pages")
        // Exactly one newest chunk of the key, the last one published, byte for byte.
        let latest = try await client.latest(channel: "shots", key: "latest")
        #expect(latest.sequence == UInt64(count))
        #expect(latest.bytes == [UInt8](repeating: UInt8(truncatingIfNeeded: count - 1), count: size))
    }

    @Test(.timeLimit(.minutes(5))) func aContinuingPublisherCarriesOverEveryKeyAndTheRegistrySeesOneNewestEach() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        var options = Publisher.Options()
        options.capacity = 1 << 20
        options.persistent = true
        let first = try await Publisher.open(channel: "keys", on: .address(fixture.address), options: options)
        try first.publish(Array("a1".utf8), key: "a")
        try first.publish(Array("b1".utf8), key: "b")
        try first.publish(Array("a2".utf8), key: "a")      // obsoletes a1
        try first.publish(Array("log".utf8))               // no key: carried over too
        try first.publish(Array("gone".utf8), key: "e", expiresIn: .milliseconds(1))
        await first.close()
        try await Task.sleep(for: .milliseconds(20))

        // Not persistent itself: continuing persistent data keeps them persistent.
        let second = try await Publisher.open(channel: "keys", on: .address(fixture.address), options: .init())
        let c = try second.publish(Array("c1".utf8), key: "c")
        #expect(c.sequence == 6, "after the last sequence of the history")
        for (key, value) in [("a", "a2"), ("b", "b1"), ("c", "c1")] {
            let chunk = try await client.latest(channel: "keys", key: key)
            #expect(String(decoding: chunk.bytes, as: UTF8.self) == value, "\(key)")
        }
        await #expect(throws: ShmBusError.self) { try await client.latest(channel: "keys", key: "e") }
        let segments = try await client.segments(of: "keys")
        #expect(segments.count == 2, "the continued one (retired) and the new one")
        #expect(segments.filter { $0.state == SegmentState.active.rawValue }.count == 1)
        let allPersistent = segments.allSatisfy { $0.persistent }
        #expect(allPersistent)
        await second.close()
        // The second publisher left too: its segment, persistent, still holds everything.
        let kept = try await client.latest(channel: "keys", key: "a")
        #expect(String(decoding: kept.bytes, as: UTF8.self) == "a2")
    }

    @Test(.timeLimit(.minutes(5))) func aSubscriberFollowsAHistoryHandedOverThreeTimes() async throws {
        let fixture = try await RegistryFixture()
        var options = Publisher.Options()
        options.capacity = 256 << 10
        options.persistent = true
        let perPublisher = 40
        var publisher = try await Publisher.open(channel: "handed", on: .address(fixture.address), options: options)
        let subscriber = try await Subscriber.open(channel: "handed", on: .address(fixture.address), options: .init(start: .oldest))
        var events = subscriber.makeAsyncIterator()
        var delivered: [UInt64] = []
        var left = 0
        for round in 0..<4 {
            for _ in 0..<perPublisher {
                let next = publisher.lastSequence + 1
                try publisher.publish(key: "", length: 256) { TestPayload.fill($0, sequence: next) }
            }
            await publisher.flush()
            // Read everything this publisher committed.
            while delivered.last ?? 0 < UInt64((round + 1) * perPublisher), let event = try await events.next() {
                switch event {
                case .chunk(let chunk):
                    #expect(TestPayload.check(chunk))
                    delivered.append(chunk.sequence)
                case .gap(let missed, let after): Issue.record("gap of \(missed) after \(after)")
                case .publisherLeft: left += 1
                }
            }
            guard round < 3 else { break }
            await publisher.close()
            guard case .publisherLeft? = try await events.next() else { Issue.record("publisherLeft expected"); return }
            left += 1
            publisher = try await Publisher.open(channel: "handed", on: .address(fixture.address), options: options)
        }
        await publisher.close()
        #expect(delivered == Array(1...UInt64(4 * perPublisher)), "every chunk once, in order, across four publishers")
        #expect(left == 3)
        subscriber.cancel()
    }

    @Test(.timeLimit(.minutes(5))) func theReadmeScreenshotLoopStaysAtTwoSegments() async throws {
        // The README's own example, run as a user would: once per screenshot.
        let fixture = try await RegistryFixture()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shots-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for index in 0..<20 {
            let shot = directory.appendingPathComponent("shot.png")
            try Data(repeating: UInt8(index), count: 300_000 + index).write(to: shot)
            let (status, _, err) = try await fixture.run(["publish", "--channel", "screenshots", "--key", "latest", "--persistent", shot.path])
            #expect(status == .exited(0), "\(err)")
        }
        let client = try await fixture.client()
        let segments = try await client.segments(of: "screenshots")
        #expect(segments.count <= 2)
        let held: UInt64 = segments.map(\.capacity).reduce(0, +)
        let oneSegment = try #require(SegmentLayout.capacity(forOneChunkOf: 300_019, keyLength: 6))
        #expect(held <= 2 * oneSegment, "what is held is two screenshots, not two 64 MiB segments")
        let copy = directory.appendingPathComponent("copy.png")
        let (status, _, err) = try await fixture.run(["cat", "--channel", "screenshots", "--key", "latest", "-o", copy.path])
        #expect(status == .exited(0), "\(err)")
        #expect(try Data(contentsOf: copy) == Data(repeating: 19, count: 300_019), "shmbus cat: the last screenshot, byte for byte")
        let latest = try await client.latest(channel: "screenshots", key: "latest")
        #expect(latest.bytes == [UInt8](repeating: 19, count: 300_019))
        #expect(latest.sequence == 20)
    }

    @Test(.timeLimit(.minutes(5))) func expiredPersistentDataAreReclaimedWithoutAnyonePublishing() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        var options = Publisher.Options()
        options.capacity = 64 << 10
        options.persistent = true
        // The segment must be there while its chunk lives. Whether the look came in that
        // time is told by the clock read after it (a loaded machine can delay the test
        // past any short life); a look that came too late proves nothing, and the chunk
        // is published again, on a channel of its own, with a longer life.
        var channels: [String] = []
        var life = Duration.zero
        var seenKept = false
        for chunkLife in [Duration.milliseconds(500), .seconds(5), .seconds(30)] {
            life = chunkLife
            let channel = "fading/\(channels.count)"
            channels.append(channel)
            let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
            // Read before publishing: the chunk expires later than this.
            let liveUntil = RealtimeClock.after(life)
            try publisher.publish(Array("soon gone".utf8), key: "k", expiresIn: life)
            await publisher.close()
            let kept = try? await client.segments(of: channel).count
            if RealtimeClock.now() < liveUntil {
                #expect(kept == 1, "kept after its publisher left: it is persistent")
                seenKept = true
                break
            }
            print("expiredPersistentData: looked only after a life of \(life); again with a longer one")
        }
        #expect(seenKept, "never looked within 30 s of publishing")
        // Nobody publishes again; the registry removes each segment once nothing in it
        // is live (the deadline only ends a registry that never does).
        let deadline = ContinuousClock.now + life + .seconds(60)
        var remaining = 1
        while remaining > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            remaining = 0
            for channel in channels {
                // (An `if` in the catch, not `catch where`: Swift 6.3.1 crashes compiling
                // the latter in this loop.)
                do {
                    remaining += try await client.segments(of: channel).count
                } catch {
                    if error.code != .notFound { throw error }
                }
            }
        }
        #expect(remaining == 0)
        let total: UInt64 = try await ShmBusProtocol.registry(on: client.connection).totalBytes
        #expect(total == 0)
    }
}
