import ShmBus
import TestSupport
import Testing

/// A publisher that closes right after a garbage collection: the new generation is
/// only in the registry and in the publisher, and the registry drops it as a
/// non-persistent publisher leaves. `Options.linger` keeps the publisher on the bus
/// for a while after a collection so that a reader still on the retired generation
/// can follow it; without it, that reader loses the last chunks (and says so).
@Suite struct PublisherLingerTests {
    /// Publishes 1 KiB chunks into 64 KiB segments until a collection made a new
    /// generation, then one more chunk into it; returns the last sequence.
    static func publishPastACollection(_ publisher: Publisher) throws -> UInt64 {
        let first = publisher.currentSegment
        let payload = [UInt8](repeating: 0x5A, count: 1024)
        while publisher.currentSegment == first { try publisher.publish(payload) }
        try publisher.publish(payload)
        return publisher.lastSequence
    }

    static func open(_ fixture: RegistryFixture, channel: String, linger: Duration) async throws -> (Publisher, Subscriber) {
        var options = Publisher.Options()
        options.capacity = 64 << 10
        options.linger = linger
        let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
        // The subscriber maps the first generation now, and reads it only later.
        let subscriber = try await Subscriber.open(
            channel: channel, on: .address(fixture.address), options: .init(start: .oldest, endWhenPublisherLeaves: true))
        return (publisher, subscriber)
    }

    static func read(_ subscriber: Subscriber) async throws -> (sequences: [UInt64], left: Int) {
        var sequences: [UInt64] = []
        var left = 0
        for try await event in subscriber {
            switch event {
            case .chunk(let chunk): sequences.append(chunk.sequence)
            case .gap(let missed, let after): Issue.record("gap of \(missed) after \(after)")
            case .publisherLeft: left += 1
            }
        }
        return (sequences, left)
    }

    @Test(.timeLimit(.minutes(5))) func aReaderOnTheRetiredGenerationGetsTheLastChunksWhileThePublisherLingers() async throws {
        let fixture = try await RegistryFixture()
        // The linger is long because the reader's way to the successor (read the
        // retired generation, look the new one up) can take seconds on a loaded CI
        // machine; a 3 s linger was once not enough there.
        let (publisher, subscriber) = try await Self.open(fixture, channel: "linger/kept", linger: .seconds(20))
        let last = try Self.publishPastACollection(publisher)
        let closing = Task { await publisher.close() }
        // A reader that comes late, but within the linger: without it, the publisher
        // would be gone by now (the test below).
        try await Task.sleep(for: .milliseconds(500))
        let (sequences, left) = try await Self.read(subscriber)
        await closing.value
        // Collections copy nothing of a channel without keys: the new generation holds
        // the chunks published after it, and the reader needs it for the last ones.
        #expect(sequences.last == last, "read up to \(sequences.last ?? 0) of \(last)")
        #expect(sequences == Array(1...last))
        #expect(left == 1)
        #expect(subscriber.statistics.successorsLost == 0)
    }

    @Test(.timeLimit(.minutes(5))) func withoutLingerTheLastChunksLeaveWithThePublisher() async throws {
        let fixture = try await RegistryFixture()
        let (publisher, subscriber) = try await Self.open(fixture, channel: "linger/none", linger: .zero)
        let last = try Self.publishPastACollection(publisher)
        await publisher.close()
        // The registry drops the segments as the connection's name goes away.
        let client = try await fixture.client()
        while try await client.channel("linger/none") != nil { try await Task.sleep(for: .milliseconds(10)) }
        let (sequences, left) = try await Self.read(subscriber)
        #expect(sequences.count < Int(last), "the chunks of the new generation are gone")
        #expect(sequences == Array(1...UInt64(sequences.count)))
        #expect(left == 1)
        #expect(subscriber.statistics.successorsLost == 1)
    }
}
