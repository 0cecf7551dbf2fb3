import DBus
import Foundation
import Locking
import ShmBus
import TestSupport
import Testing

/// What `org.shmbus.Publisher1.Committed` promises a listener that is not a ShmBus
/// subscriber (docs/PROTOCOL.md): through coalescing and garbage collection, every chunk
/// is announced in the segment it was published into, no range spans two segments, and
/// the publisher's count of signals is what went out.
@Suite struct CommittedSignalTests {
    struct Range: Equatable {
        var segment: String
        var generation: UInt64
        var startOffset: UInt64
        var endOffset: UInt64
        var firstSequence: UInt64
        var lastSequence: UInt64
    }

    @Test func everyChunkIsAnnouncedInItsOwnSegmentThroughCollections() async throws {
        let fixture = try await RegistryFixture()
        let listener = try await fixture.connect()
        let publisher = try await fixture.smallSegmentPublisher(channel: "announced")
        let heard = Lock<[Range]>([])
        let handler = try await listener.onSignal(
            matching: MatchRule(
                sender: publisher.connection.uniqueName, interface: Publisher1.name, member: "Committed",
                path: ShmBusProtocol.publisherPath)
        ) { message in
            guard message.body.count == 7, case .string("announced") = message.body[0], case .string(let segment) = message.body[1],
                case .uint64(let generation) = message.body[2], case .uint64(let start) = message.body[3],
                case .uint64(let end) = message.body[4], case .uint64(let first) = message.body[5],
                case .uint64(let last) = message.body[6]
            else { return }
            heard.withLock { $0.append(Range(segment: segment, generation: generation, startOffset: start, endOffset: end, firstSequence: first, lastSequence: last)) }
        }
        defer { handler.cancel() }

        // 2,000 chunks of 1 KiB: about 30 generations of 64 KiB, in bursts that the
        // notifier coalesces, with pauses that let it announce at once.
        var published: [PublishedChunk] = []
        for burst in 0..<20 {
            for _ in 0..<100 { published.append(try publisher.publish([UInt8](repeating: UInt8(burst), count: 1024))) }
            try await Task.sleep(for: .milliseconds(3))
        }
        await publisher.flush()
        let sent = publisher.signalsSent
        // The bus delivers in order; wait until everything sent has arrived.
        let deadline = ContinuousClock.now + .seconds(30)
        while heard.withLock({ UInt64($0.count) }) < sent, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let ranges = heard.withLock { $0 }

        #expect(Set(published.map(\.segment)).count > 10, "the test went through many generations")
        #expect(UInt64(ranges.count) == sent, "signalsSent counts what went out: \(sent) sent, \(ranges.count) heard")
        for range in ranges {
            #expect(range.startOffset >= 4096 && range.startOffset < range.endOffset && range.endOffset <= 64 << 10, "\(range)")
            #expect(range.firstSequence <= range.lastSequence, "\(range)")
        }
        // One segment name per generation, so a range never mixes two segments.
        let namesByGeneration = Dictionary(grouping: ranges, by: \.generation).mapValues { Set($0.map(\.segment)) }
        #expect(namesByGeneration.values.allSatisfy { $0.count == 1 }, "\(namesByGeneration)")
        // Announced in its own segment and generation, by sequence and by byte range.
        let unannounced = published.filter { chunk in
            !ranges.contains {
                $0.segment == chunk.segment && $0.generation == chunk.generation
                    && $0.firstSequence <= chunk.sequence && chunk.sequence <= $0.lastSequence
                    && $0.startOffset < chunk.offset && chunk.offset + chunk.length <= $0.endOffset
            }
        }
        let unannouncedCount = unannounced.count
        #expect(unannouncedCount == 0, "chunks never announced in their segment; the first: \(String(describing: unannounced.first))")
        await publisher.close()
    }
}
