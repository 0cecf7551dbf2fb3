import Locking
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// `Publisher.Options.reuseMemory` with real subscribers on a real bus: each hands the
/// publisher its lease page (`Publisher1.Lease`) before it reads the first segment, and
/// the publisher gives retired segments' memory to later generations only once no
/// lease holds them (docs/FORMAT.md, "Reused memory").
@Suite struct ReusedMemoryBusTests {
    /// 40 KiB chunks into 64 KiB segments: one chunk per generation, so every publish
    /// after the first makes a new one.
    static let chunkSize = 40 << 10

    static func options() -> Publisher.Options {
        var options = Publisher.Options()
        options.capacity = 64 << 10
        options.garbageCollection = .whenFull
        options.reuseMemory = true
        options.prefaultBytes = 0
        return options
    }

    static func payload(_ sequence: UInt64) -> [UInt8] { [UInt8](repeating: UInt8(truncatingIfNeeded: sequence % 251), count: chunkSize) }

    /// Whether `chunk` holds the bytes ``payload(_:)`` published for its sequence.
    static func intact(_ chunk: Chunk) -> Bool {
        let value = UInt8(truncatingIfNeeded: chunk.sequence % 251)
        return chunk.count == chunkSize && chunk.withUnsafeBytes { $0.allSatisfy { $0 == value } }
    }

    /// Reads `subscriber` in a task of its own, recording sequences and whether every
    /// chunk was intact when read; `keep` chunks stay referenced.
    static func reader(_ subscriber: Subscriber, keep: @escaping @Sendable (Chunk) -> Bool = { _ in false })
        -> (read: Lock<(sequences: [UInt64], intact: Bool, kept: [Chunk])>, task: Task<Void, any Error>)
    {
        let read = Lock((sequences: [UInt64](), intact: true, kept: [Chunk]()))
        let task = Task {
            for try await event in subscriber {
                guard case .chunk(let chunk) = event else { continue }
                let ok = intact(chunk)
                read.withLock {
                    $0.sequences.append(chunk.sequence)
                    if !ok { $0.intact = false }
                    if keep(chunk) { $0.kept.append(chunk) }
                }
            }
        }
        return (read, task)
    }

    /// Publishes `count` chunks, each once the reader has the one before.
    static func publishInStep(
        _ publisher: Publisher, count: Int, read: Lock<(sequences: [UInt64], intact: Bool, kept: [Chunk])>
    ) async throws {
        for _ in 0..<count {
            let next = publisher.lastSequence + 1
            try publisher.publish(payload(next))
            let deadline = ContinuousClock.now + .seconds(60)
            while read.withLock({ $0.sequences.last ?? 0 }) < next {
                guard ContinuousClock.now < deadline else {
                    Issue.record("the subscriber did not read chunk \(next) within 60 s")
                    return
                }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    @Test(.timeLimit(.minutes(5)), arguments: [Subscriber.Wait.bus, .futex])
    func aSubscriberThatKeepsUpReadsEveryChunkWhileThePublisherReusesMemory(wait: Subscriber.Wait) async throws {
        let fixture = try await RegistryFixture()
        let channel = "reuse/step-\(wait == .bus ? "bus" : "futex")"
        let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address), options: Self.options())
        let subscriber = try await Subscriber.open(channel: channel, on: .address(fixture.address), options: .init(start: .oldest, wait: wait))
        let (read, task) = Self.reader(subscriber)
        try await Self.publishInStep(publisher, count: 40, read: read)
        let result = read.withLock { ($0.sequences, $0.intact) }
        #expect(result.0 == Array(1...40))
        #expect(result.1, "a chunk did not hold what was published")
        let reuse = publisher.memoryReuse
        #expect(reuse.leases == 1)
        #expect(reuse.reusedGenerations > 20, "\(reuse)")
        subscriber.cancel()
        _ = try? await task.value
        await publisher.close()
    }

    @Test(.timeLimit(.minutes(5))) func aChunkHeldByASubscriberKeepsItsBytesWhileThePublisherMovesOn() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "reuse/held", on: .address(fixture.address), options: Self.options())
        let subscriber = try await Subscriber.open(channel: "reuse/held", on: .address(fixture.address), options: .init(start: .oldest))
        let (read, task) = Self.reader(subscriber, keep: { $0.sequence == 2 })
        try await Self.publishInStep(publisher, count: 40, read: read)
        let (sequences, kept) = read.withLock { ($0.sequences, $0.kept) }
        #expect(sequences == Array(1...40))
        let held = try #require(kept.first)
        #expect(held.isLeased)
        // Thirty-eight generations later, every other segment's memory reused.
        #expect(Self.intact(held), "the held chunk changed under its view")
        let reuse = publisher.memoryReuse
        #expect(reuse.heldBack > 0, "\(reuse)")
        #expect(reuse.reusedGenerations > 20, "\(reuse)")
        subscriber.cancel()
        _ = try? await task.value
        await publisher.close()
    }

    /// Two subscribers on one connection have a lease page each, and the publisher
    /// keeps both: the second one's page does not take the place of the first's.
    @Test(.timeLimit(.minutes(5))) func twoSubscribersOnOneConnectionKeepTheirLeasesApart() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "reuse/shared", on: .address(fixture.address), options: Self.options())
        let connection = try await fixture.connect()
        let first = try await Subscriber.open(channel: "reuse/shared", connection: connection, options: .init(start: .oldest))
        let (read, task) = Self.reader(first, keep: { $0.sequence == 2 })
        try await Self.publishInStep(publisher, count: 4, read: read)
        let second = try await Subscriber.open(channel: "reuse/shared", connection: connection, options: .init(start: .now))
        let (_, secondTask) = Self.reader(second)
        try await Self.publishInStep(publisher, count: 40, read: read)
        let kept = try #require(read.withLock { $0.kept.first })
        #expect(Self.intact(kept), "the first subscriber's chunk changed when the second one's lease came")
        let reuse = publisher.memoryReuse
        #expect(reuse.leases == 2, "\(reuse)")
        #expect(reuse.reusedGenerations > 20, "\(reuse)")
        first.cancel()
        second.cancel()
        _ = try? await task.value
        _ = try? await secondTask.value
        await publisher.close()
    }

    @Test(.timeLimit(.minutes(5))) func aSubscriberThatLeavesTheBusGivesItsLeaseBack() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "reuse/leave", on: .address(fixture.address), options: Self.options())
        let subscriber = try await Subscriber.open(channel: "reuse/leave", on: .address(fixture.address), options: .init(start: .oldest))
        let (read, task) = Self.reader(subscriber)
        try await Self.publishInStep(publisher, count: 3, read: read)
        #expect(publisher.memoryReuse.leases == 1)
        subscriber.cancel()
        _ = try? await task.value
        subscriber.connection.close()
        let deadline = ContinuousClock.now + .seconds(60)
        while publisher.memoryReuse.leases > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(publisher.memoryReuse.leases == 0)
        await publisher.close()
    }

    @Test(.timeLimit(.minutes(2))) func reuseAndPersistenceAreRefusedTogether() async throws {
        let fixture = try await RegistryFixture()
        var options = Self.options()
        options.persistent = true
        do {
            _ = try await Publisher.open(channel: "reuse/persistent", on: .address(fixture.address), options: options)
            Issue.record("a persistent publisher was opened with reuseMemory")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }
}
