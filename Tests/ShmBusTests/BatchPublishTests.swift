import Foundation
import ShmBus
import TestSupport
import Testing

/// `Publisher.publishBatch`: many chunks, one commit (issue 14, "64-byte chunks"), and
/// `Subscriber.batches`, the same events an array at a time. Against a real registry
/// and dbus-daemon; the chunks are read back from the shared segments.
@Suite struct BatchPublishTests {
    static func publisher(_ fixture: RegistryFixture, _ channel: String, capacity: UInt64 = 64 << 20) async throws -> Publisher {
        var options = Publisher.Options()
        options.capacity = capacity
        return try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
    }

    /// Reads events by the batch until `last` was read or reported missing.
    static func read(_ subscriber: Subscriber, through last: UInt64) async throws -> (chunks: [Chunk], missed: UInt64, arrays: Int) {
        var chunks: [Chunk] = []
        var missed: UInt64 = 0
        var arrays = 0
        var seen: UInt64 = 0
        for try await events in subscriber.batches {
            #expect(!events.isEmpty, "never an empty array")
            arrays += 1
            for event in events {
                switch event {
                case .chunk(let chunk):
                    chunks.append(chunk)
                    seen = chunk.sequence
                case .gap(let n, let after):
                    missed += n
                    seen = after + n
                case .publisherLeft:
                    Issue.record("the publisher is still there")
                }
            }
            if seen >= last { break }
        }
        return (chunks, missed, arrays)
    }

    @Test func aBatchIsReadInOrderByteForByteAndAnnouncedOnce() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "batch/order")
        let subscriber = try await Subscriber.open(channel: "batch/order", on: .address(fixture.address), options: .init(start: .oldest))
        let signalsBefore = publisher.signalsSent
        let published = try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
            for index in 0..<1_000 {
                try batch.append(length: 64) { buffer in
                    for offset in 0..<64 { buffer[offset] = UInt8(truncatingIfNeeded: index &+ offset) }
                }
            }
        }
        #expect(published.count == 1_000)
        let sequences = try #require(published.sequences)
        #expect(sequences.count == 1_000)
        await publisher.flush()
        #expect(publisher.signalsSent - signalsBefore == 1, "one Committed for the whole batch")
        let read = try await Self.read(subscriber, through: sequences.upperBound)
        #expect(read.missed == 0)
        #expect(read.chunks.map(\.sequence) == Array(sequences))
        for (index, chunk) in read.chunks.enumerated() {
            let expected = (0..<64).map { UInt8(truncatingIfNeeded: index &+ $0) }
            #expect(chunk.withUnsafeBytes { Array($0) } == expected, "chunk \(index)")
        }
        #expect(read.arrays < 1_000, "read by the array, not one by one (\(read.arrays) arrays)")
        #expect(Set(read.chunks.map(\.timestamp)).count == 1, "one timestamp for the batch")
        subscriber.cancel()
        await publisher.close()
    }

    /// Keys in a batch replace as they do one by one, a key repeated inside the batch
    /// included: the registry's latest is the last one appended.
    @Test func keysInABatchReplaceOlderChunksAndEachOther() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "batch/keys")
        try publisher.publish(Array("old".utf8), key: "frame")
        try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
            try batch.append(Array("first".utf8), key: "frame")
            try batch.append(Array("other".utf8), key: "thumbnail")
            try batch.append(Array("second".utf8), key: "frame")
        }
        await publisher.flush()
        let frame = try await Subscriber.latest(channel: "batch/keys", key: "frame", on: .address(fixture.address))
        #expect(String(decoding: frame.withUnsafeBytes { Array($0) }, as: UTF8.self) == "second")
        let thumbnail = try await Subscriber.latest(channel: "batch/keys", key: "thumbnail", on: .address(fixture.address))
        #expect(String(decoding: thumbnail.withUnsafeBytes { Array($0) }, as: UTF8.self) == "other")
        let subscriber = try await Subscriber.open(channel: "batch/keys", on: .address(fixture.address), options: .init(start: .oldest))
        let read = try await Self.read(subscriber, through: publisher.lastSequence)
        let live = read.chunks.map { String(decoding: $0.withUnsafeBytes { Array($0) }, as: UTF8.self) }
        #expect(live == ["other", "second"], "the replaced chunks are obsolete: \(live)")
        subscriber.cancel()
        await publisher.close()
    }

    /// A batch larger than the segment is committed in parts, across collections; a
    /// subscriber that follows gets every chunk or an exact gap, in order.
    @Test func aBatchLargerThanTheSegmentIsCommittedInParts() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "batch/parts", capacity: 64 << 10)
        let subscriber = try await Subscriber.open(channel: "batch/parts", on: .address(fixture.address), options: .init(start: .oldest))
        let generationBefore = publisher.currentSegment
        let published = try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
            for index in 0..<5_000 { try batch.append(withUnsafeBytes(of: UInt64(index)) { Array($0) }) }
        }
        #expect(published.count == 5_000)
        #expect(publisher.currentSegment != generationBefore, "the batch outgrew its segment")
        await publisher.flush()
        let sequences = try #require(published.sequences)
        let read = try await Self.read(subscriber, through: sequences.upperBound)
        let delivered = read.chunks.map(\.sequence)
        #expect(delivered == delivered.sorted() && Set(delivered).count == delivered.count, "in order, none twice")
        #expect(UInt64(delivered.count) + read.missed == UInt64(sequences.count), "every chunk read or counted missing")
        for chunk in read.chunks {
            let value = chunk.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            #expect(value == chunk.sequence - sequences.lowerBound, "chunk \(chunk.sequence) holds its own index")
        }
        subscriber.cancel()
        await publisher.close()
    }

    struct Stop: Error {}

    /// What was appended before the closure threw is published; the error comes out as
    /// it was thrown.
    @Test func chunksAppendedBeforeAnErrorArePublished() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "batch/error")
        let before = publisher.lastSequence
        #expect(throws: Stop.self) {
            try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(any Error) in
                try batch.append(Array("kept".utf8))
                try batch.append(Array("kept too".utf8))
                throw Stop()
            }
        }
        #expect(publisher.lastSequence == before + 2)
        #expect(throws: ShmBusError.self, "a chunk larger than the segment is refused, not truncated") {
            try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
                try batch.append(length: 128 << 20) { _ in }
            }
        }
        #expect(publisher.lastSequence == before + 2, "and takes no sequence")
        let next = try publisher.publish(Array("after".utf8))
        #expect(next.sequence == before + 3, "one by one works after a batch")
        await publisher.close()
    }

    /// A chunk's fill that appends to its own batch is refused: the chunk it fills would
    /// otherwise be committed before its bytes are written.
    @Test func aFillThatAppendsToItsOwnBatchIsRefused() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Self.publisher(fixture, "batch/nested")
        var nested: ShmBusError?
        try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
            try batch.append(length: 8) { buffer in
                do throws(ShmBusError) { try batch.append(Array("inner".utf8)) } catch { nested = error }
                buffer.initializeMemory(as: UInt8.self, repeating: 1)
            }
        }
        #expect(nested?.code == .invalidArgument)
        #expect(publisher.lastSequence == 1, "only the outer chunk")
        await publisher.close()
    }
}
