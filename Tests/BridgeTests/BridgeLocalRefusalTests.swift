import Foundation
import NATS
import ShmBus
import TestSupport
import Testing

extension BridgeTests {
    /// Host B's registry is down while chunks of a new channel arrive: the importer
    /// cannot open the channel's publisher there, so it must not acknowledge them.
    /// Before 2026-12-03 it did, and those chunks were lost; now it starts its consumer
    /// again from the acknowledged position until B's registry is back.
    @Test("chunks B's registry cannot take while it is down are not acknowledged: they arrive once it is back, once each, in order")
    func chunksRefusedOnTheImportingHostAreNotLost() async throws {
        let hosts = try await BridgedHosts(
            stream: "REFUSED", exports: ["lab/"], imports: ["lab/"],
            extra: ["--part-size", "64KiB", "--capacity", "8MiB", "--import-from", "all"])
        defer { hosts.tearDown() }
        let channel = "lab/probe"
        let publisher = try await Publisher.open(channel: channel, on: hosts.a.bus.bus)
        var sent: [UInt64: [UInt8]] = [:]
        func publish(_ range: ClosedRange<Int>) throws { try Self.publish(range, base: 100_000, on: publisher, into: &sent) }
        try await hosts.startExporter()
        hosts.b.stopRegistry()
        try await hosts.startImporter()
        try publish(1...5)
        try await hosts.waitForStored(subject: "shmbus.REFUSED.%.1.lab.probe", sequence: 5)
        // The importer has tried the first chunk and been refused (its log says so).
        try await hosts.reportingLogs {
            try await waitUntil("B's bridge to be refused by B's bus") {
                hosts.importer?.logText.contains("not published here, trying again") ?? false
            }
        }
        try await hosts.b.startRegistryAgain()
        try publish(6...8)

        let bus = hosts.b.bus.bus
        let seen: [Seen]
        do {
            seen = try await Self.read(8, channel: channel, bus: bus)
        } catch {
            Issue.record("\(error)\n\(hosts.logs)")
            throw error
        }
        #expect(seen.map(\.sequence) == Array(1...8), "each chunk once, in order, none missing")
        for chunk in seen { #expect(chunk.bytes == sent[chunk.sequence], "chunk \(chunk.sequence)") }
        await publisher.close()
    }
}
