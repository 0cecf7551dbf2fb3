import DBus
import Foundation
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// A publisher that copies another host's channel (the JetStream bridge) keeps that
/// channel's sequences and timestamps: the sequences it skips are a gap to its
/// subscribers, as they were on the other host, and it never goes back.
@Suite struct ImportedSequenceTests {
    @Test(.timeLimit(.minutes(5))) func importedSequencesKeepTheirGapsAndNeverRepeat() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "imported", on: .address(fixture.address))
        let stamp: UInt64 = 1_767_225_600_000_000_000
        for sequence: UInt64 in [5, 6, 9] {
            try publisher.publish(key: "", length: 4, origin: .init(sequence: sequence, timestamp: stamp + sequence, expiry: 0)) {
                $0.storeBytes(of: UInt32(sequence), as: UInt32.self)
            }
        }
        #expect(publisher.lastSequence == 9)
        let again = #expect(throws: ShmBusError.self) {
            try publisher.publish(key: "", length: 1, origin: .init(sequence: 9, timestamp: stamp, expiry: 0)) { _ in }
        }
        #expect(again?.message.contains("not above the channel's last sequence 9") == true)
        // A fill that throws publishes nothing, and its error comes back as it was.
        struct Interrupted: Error {}
        #expect(throws: Interrupted.self) {
            try publisher.publish(key: "", length: 1, origin: .init(sequence: 10, timestamp: stamp, expiry: 0)) { _ in throw Interrupted() }
        }
        #expect(publisher.lastSequence == 9)

        let subscriber = try await Subscriber.open(channel: "imported", on: .address(fixture.address), options: .init(start: .oldest))
        var events: [String] = []
        for try await event in subscriber {
            switch event {
            case .chunk(let chunk):
                events.append("chunk \(chunk.sequence) at \(chunk.timestamp - stamp)")
                #expect(chunk.bytes == withUnsafeBytes(of: UInt32(chunk.sequence)) { Array($0) })
            case .gap(let missed, let after): events.append("gap \(missed) after \(after)")
            case .publisherLeft: events.append("left")
            }
            if events.count == 4 { break }
        }
        #expect(events == ["chunk 5 at 5", "chunk 6 at 6", "gap 2 after 6", "chunk 9 at 9"])
        subscriber.cancel()
        await publisher.close()
    }
}
