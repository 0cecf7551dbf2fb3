import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// A subscriber is told when its channel's publisher is gone (here: SIGKILLed, the
/// worst case), after every chunk it committed, instead of waiting forever; and it
/// goes on reading when a publisher of the channel returns.
@Suite struct PublisherLeftTests {
    static func publish(_ fixture: RegistryFixture, channel: String, count: Int) async throws -> ChildProcess {
        let peer = try PublishSubscribeTests.peer(fixture, channel: channel, count: count, size: 64, capacity: 1 << 20)
        #expect(try await PublishSubscribeTests.publishedLine(peer).hasPrefix("published \(count)"))
        return peer
    }

    @Test(.timeLimit(.minutes(5))) func aKilledPublisherEndsTheIterationAfterItsLastChunkWhenAsked() async throws {
        let fixture = try await RegistryFixture()
        let peer = try await Self.publish(fixture, channel: "left/end", count: 50)
        let subscriber = try await Subscriber.open(
            channel: "left/end", on: .address(fixture.address), options: .init(start: .oldest, endWhenPublisherLeaves: true))
        let owner = try #require(try await fixture.client().channel("left/end")?.owner)
        peer.signal(SIGKILL)
        _ = await peer.exit()
        var sequences: [UInt64] = []
        var left: [String] = []
        for try await event in subscriber {
            switch event {
            case .chunk(let chunk): sequences.append(chunk.sequence)
            case .gap(let missed, let after): Issue.record("gap of \(missed) after \(after)")
            case .publisherLeft(let who): left.append(who)
            }
        }
        #expect(sequences == Array(1...50), "every chunk first")
        #expect(left == [owner], "then the departure, once, naming the publisher")
    }

    @Test(.timeLimit(.minutes(5))) func aSubscriberGoesOnWithTheChannelsNextPublisher() async throws {
        let fixture = try await RegistryFixture()
        let first = try await Self.publish(fixture, channel: "left/again", count: 10)
        let subscriber = try await Subscriber.open(channel: "left/again", on: .address(fixture.address), options: .init(start: .oldest))
        var events = subscriber.makeAsyncIterator()
        for expected in 1...10 {
            guard case .chunk(let chunk)? = try await events.next() else { Issue.record("chunk \(expected) expected"); return }
            #expect(chunk.sequence == UInt64(expected))
        }
        first.signal(SIGKILL)
        _ = await first.exit()
        guard case .publisherLeft? = try await events.next() else { Issue.record("publisherLeft expected"); return }

        let second = try await Self.publish(fixture, channel: "left/again", count: 10)
        defer { second.closeStandardInput() }
        var received = 0
        while received < 10, let event = try await events.next() {
            guard case .chunk(let chunk) = event else { continue }
            #expect(TestPayload.check(chunk))
            received += 1
        }
        #expect(received == 10, "the second publisher's chunks arrive on the same subscription")
        subscriber.cancel()
    }

    @Test(.timeLimit(.minutes(5))) func subscribeUntilPublisherLeavesExitsZeroAfterTheLastChunk() async throws {
        let fixture = try await RegistryFixture()
        let peer = try await Self.publish(fixture, channel: "left/cli", count: 5)
        let subscribe = try ChildProcess(
            fixture.shmbus, ["subscribe", "--channel", "left/cli", "--from", "oldest", "--until-publisher-leaves", "--json", "--bus", fixture.address],
            stdout: .pipe, stderr: .pipe)
        var lines: [String] = []
        while lines.count < 5, let line = try await subscribe.readLine() { lines.append(line) }
        peer.signal(SIGKILL)
        _ = await peer.exit()
        while let line = try await subscribe.readLine() { lines.append(line) }
        #expect(await subscribe.exit() == .exited(0))
        #expect(lines.count == 6, "\(lines)")
        #expect(lines.prefix(5).allSatisfy { $0.contains("\"event\":\"chunk\"") })
        #expect(lines.last?.contains("\"event\":\"publisher-left\"") == true, "\(lines)")
    }

    @Test(.timeLimit(.minutes(5))) func aPublisherKilledWhilePublishingLeavesNothingUndelivered() async throws {
        // The departure may be seen between a read that found nothing and the
        // publisher's last commits: every round kills it mid-flood, and the subscriber
        // must still deliver everything committed before saying it left.
        let fixture = try await RegistryFixture()
        for round in 0..<12 {
            let channel = "left/flood/\(round)"
            let peer = try ChildProcess(
                BuiltProducts.path("shmbus-test-peer"), ["loop", fixture.address, channel, "4096", "\(4 << 20)", "\(round + 1)"],
                stdout: .pipe, stderr: .inherit)
            // `loop` publishes until killed: a round that fails before its kill must not
            // leave it running (it holds the suite's stderr, so `swift test` would wait).
            defer { peer.signal(SIGKILL) }
            #expect(try await peer.readLine()?.hasPrefix("ready") == true)
            let subscriber = try await Subscriber.open(
                channel: channel, on: .address(fixture.address), options: .init(start: .oldest, endWhenPublisherLeaves: true))
            var delivered = 0
            var left = 0
            // The kill comes a while after the first chunk arrived, mid-flood: timed from
            // the peer's start instead, a peer that a loaded machine had not let publish
            // yet died with nothing committed.
            var killer: Task<Void, any Error>?
            for try await event in subscriber {
                switch event {
                case .chunk(let chunk):
                    #expect(TestPayload.check(chunk))
                    delivered += 1
                    if killer == nil {
                        killer = Task {
                            try await Task.sleep(for: .milliseconds(30 + 20 * round))
                            peer.signal(SIGKILL)
                        }
                    }
                case .gap: break
                case .publisherLeft: left += 1
                }
            }
            try await killer?.value
            _ = await peer.exit()
            let progress = try #require(subscriber.progress)
            #expect(left == 1)
            #expect(delivered > 0)
            // Everything in the segments that can still be read was delivered. (A kill
            // right after a collection takes the new generation with the publisher:
            // then the subscriber ends on the retired one, and says so in its
            // statistics.)
            #expect(progress.backlog == 0, "round \(round): \(progress.committed) committed, \(progress.delivered ?? 0) delivered")
            #expect(subscriber.statistics.successorsLost <= 1)
        }
    }

    @Test(.timeLimit(.minutes(5))) func aPersistentChannelWhosePublisherIsGoneEndsAfterItsChunks() async throws {
        let fixture = try await RegistryFixture()
        let (published, _, err) = try await fixture.run(["publish", "--channel", "left/kept", "--key", "k", "--persistent", "/etc/hostname"])
        #expect(published == .exited(0), "\(err)")
        let (status, out, subscribeErr) = try await fixture.run([
            "subscribe", "--channel", "left/kept", "--from", "oldest", "--until-publisher-leaves", "--json",
        ])
        #expect(status == .exited(0), "\(subscribeErr)")
        let lines = out.split(separator: "\n")
        #expect(lines.count == 2, "\(out)")
        #expect(lines.first?.contains("\"event\":\"chunk\"") == true)
        #expect(lines.last?.contains("\"event\":\"publisher-left\"") == true)
    }
}
