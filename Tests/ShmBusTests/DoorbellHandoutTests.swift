import Foundation
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// What a reader can do with the descriptors the registry hands it for a channel
/// (`OpenSegment`: the segment and the writer's doorbell), tried for real by another
/// process (`shmbus-test-peer doorbell … probe`), and what overwriting the doorbell
/// does to its writer.
@Suite struct DoorbellHandoutTests {
    /// Starts the hostile reader on `channel` with `arguments` after "doorbell ADDRESS CHANNEL".
    static func hostileReader(_ fixture: RegistryFixture, channel: String, _ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["doorbell", fixture.address, channel] + arguments, stdin: .pipe, stdout: .pipe,
            stderr: .inherit)
    }

    @Test func aReaderCanWriteTheDoorbellButNeitherResizeNorResealItAndCannotWriteTheSegmentAtAll() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "probed", on: .address(fixture.address))
        try publisher.publish(Array("x".utf8))
        await publisher.flush()
        let peer = try Self.hostileReader(fixture, channel: "probed", ["probe"])
        defer { peer.closeStandardInput() }
        var outcomes: [String: String] = [:]
        while let line = try await peer.readLine(), line != "probed" {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count == 3, fields[0] == "probe" { outcomes[fields[1]] = fields[2] }
        }
        print("doorbell hand-out probe: " + outcomes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))

        // The segment: no way of writing it, whatever the descriptor (the registry's is
        // read-only; one reopened read-write through /proc meets the seals).
        #expect(outcomes["segment.mode"] == "O_RDONLY")
        #expect(outcomes["segment.seals"] == "0x17")
        for attempt in ["mmap-write", "pwrite", "ftruncate", "grow", "add-seals", "mprotect-write", "reopened.mmap-write", "reopened.pwrite"] {
            let result = outcomes["segment.\(attempt)"]
            #expect(result != nil && result != "ok", "segment.\(attempt): \(result ?? "not tried")")
        }
        #expect(outcomes["segment.reopened.mmap-write"] == "EPERM", "F_SEAL_FUTURE_WRITE, not the descriptor's mode, stops it")
        #expect(outcomes["segment.reopened.pwrite"] == "EPERM")

        // The doorbell: a reader must be able to say that it sleeps (the flag at offset
        // 12), so it may map it writable; its size and seals stay the writer's.
        #expect(outcomes["doorbell.seals"] == "0x7")
        #expect(outcomes["doorbell.mmap-write"] == "ok")
        #expect(outcomes["doorbell.ftruncate"] == "EPERM")
        #expect(outcomes["doorbell.grow"] == "EPERM")
        #expect(outcomes["doorbell.add-seals"] == "EPERM")
        // And a mapping that can only be read is enough to wake the sleepers on a word or
        // move them away: futex(2) asks for no write access for either, so making the
        // doorbell read-only would not stop a reader from disturbing the others.
        #expect(outcomes["segment.futex-wake"] == "ok")
        #expect(outcomes["segment.futex-requeue"] == "ok")
        #expect(outcomes["doorbell.futex-wake"] == "ok")
        await publisher.close()
    }

    /// A reader that overwrites the doorbell's magic must not stop the writer from
    /// registering its next generation with that doorbell (the registry checks the
    /// doorbell each time a segment is registered with it).
    @Test func aReaderOverwritingTheDoorbellCannotStopTheNextGenerationFromBeingRegistered() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await fixture.smallSegmentPublisher(channel: "overwritten")
        try publisher.publish(Array("first".utf8))
        await publisher.flush()
        let peer = try Self.hostileReader(fixture, channel: "overwritten", ["zero-magic"])
        defer { peer.closeStandardInput() }
        #expect(try await peer.readLine() == "zeroed")
        // Fill the 64 KiB segment: the writer collects into generation 2 and registers it.
        let first = publisher.currentSegment
        while publisher.currentSegment == first { try publisher.publish([UInt8](repeating: 1, count: 4000)) }
        await publisher.flush()
        let client = try await fixture.client()
        let channel = try #require(try await client.channel("overwritten"))
        #expect(channel.currentSegment == publisher.currentSegment, "the registry still has generation \(channel.generation)")
        #expect(channel.generation >= 2)
        await publisher.close()
    }
}
