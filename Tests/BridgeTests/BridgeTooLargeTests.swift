import Foundation
import NATS
import ShmBus
import TestSupport
import Testing

extension BridgeTests {
    /// A chunk larger than B's `--capacity` can never be published on B. Since the
    /// importer rewinds on a refusal (so that a registry that is down loses nothing), it
    /// held that pattern's import on such a chunk forever; now the publisher's refusal
    /// of the chunk itself is logged, the chunk acknowledged and skipped.
    @Test("a chunk larger than B's --capacity is skipped with an error in the log; the chunks around it arrive, in order")
    func aChunkTooLargeForTheImporterIsSkipped() async throws {
        let hosts = try await BridgedHosts(
            stream: "TOOLARGE", exports: ["lab/"], imports: ["lab/"],
            extra: ["--capacity", "1MiB", "--import-from", "all"])
        defer { hosts.tearDown() }
        let channel = "lab/big"
        let publisher = try await Publisher.open(channel: channel, on: hosts.a.bus.bus)
        let small1 = Self.payload(1_000, seed: 1)
        let large = Self.payload(2_000_000, seed: 2)
        let small2 = Self.payload(1_000, seed: 3)
        let first = try publisher.publish(small1).sequence
        let skipped = try publisher.publish(large).sequence
        let last = try publisher.publish(small2).sequence
        try await hosts.startExporter()
        try await hosts.startImporter()

        let bus = hosts.b.bus.bus
        let seen: [(sequence: UInt64, bytes: [UInt8])]
        let gaps: [UInt64]
        do {
            (seen, gaps) = try await withDeadline("2 chunks of '\(channel)' on host B") {
                let subscriber = try await Subscriber.open(
                    channel: channel, on: bus, options: .init(start: .oldest, waitForChannel: .seconds(120)))
                defer { subscriber.cancel() }
                var seen: [(sequence: UInt64, bytes: [UInt8])] = []
                var gaps: [UInt64] = []
                for try await event in subscriber {
                    switch event {
                    case .chunk(let chunk): seen.append((chunk.sequence, chunk.bytes))
                    case .gap(let missed, let after): gaps += (after + 1...after + missed).map { $0 }
                    case .publisherLeft: continue
                    }
                    if seen.count == 2 { break }
                }
                return (seen, gaps)
            }
        } catch {
            Issue.record("\(error)\n\(hosts.logs)")
            throw error
        }
        #expect(seen.map(\.sequence) == [first, last])
        #expect(seen.first?.bytes == small1)
        #expect(seen.last?.bytes == small2)
        #expect(gaps == [skipped], "B's subscriber sees the skipped chunk as a gap")
        let log = hosts.importer?.logText ?? ""
        #expect(
            log.contains("chunk \(skipped) of '\(channel)' (2000000 bytes) can never be published on this host; skipped"),
            "\(hosts.logs)")
        await publisher.close()
    }
}
