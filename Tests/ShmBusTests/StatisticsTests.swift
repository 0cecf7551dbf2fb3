import DBus
import Foundation
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// Channel statistics (docs/PROTOCOL.md, "Statistics"): counted from the segments,
/// read with busctl, signalled to dbus-monitor only while a connection watches, and
/// the readers shown only to who may read the channel.
@Suite struct StatisticsTests {
    func busctl(_ fixture: RegistryFixture, _ arguments: [String]) async throws -> String {
        let (status, out, err) = try await BuiltProducts.run("busctl", ["--address=\(fixture.address)"] + arguments)
        #expect(status == .exited(0), "busctl \(arguments): \(err)")
        return out
    }

    func property(_ fixture: RegistryFixture, _ channel: String, _ name: String) async throws -> String {
        try await busctl(fixture, [
            "get-property", ShmBusProtocol.registryName, ShmBusProtocol.channelPath(channel).rawValue, Channel1.name, name,
        ]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // The limits only keep a broken test from hanging: in a fresh-clone CI run every test
    // starts at once on two cores, and this one was still waiting its turn at 60 s.
    @Test(.timeLimit(.minutes(5))) func countsComeFromTheSegmentsAndAcrossCollections() async throws {
        let fixture = try await RegistryFixture()
        var options = Publisher.Options()
        options.capacity = 64 << 10
        let publisher = try await Publisher.open(channel: "stats/count", on: .address(fixture.address), options: options)
        for index in 0..<1_000 { try publisher.publish([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 100)) }
        await publisher.flush()
        #expect(try await property(fixture, "stats/count", "PublishedChunks") == "t 1000")
        // Each record: 64 header bytes and 100 payload bytes, padded to 192.
        #expect(try await property(fixture, "stats/count", "PublishedBytes") == "t \(1_000 * 192)")
        let collections = try await property(fixture, "stats/count", "Collections")
        #expect(collections != "t 0", "64 KiB segments took 192,000 bytes: \(collections)")
        #expect(try await property(fixture, "stats/count", "PublisherProcess") == "u \(getpid())")
        #expect(try await property(fixture, "stats/count", "PublisherUser") == "u \(getuid())")
        #expect(try await property(fixture, "stats/count", "ReaderCount") == "u 0")

        // A reader handed a descriptor is counted, and named to a caller who may read.
        let reader = try await fixture.client()
        _ = try await reader.openSegment(publisher.currentSegment)
        #expect(try await property(fixture, "stats/count", "ReaderCount") == "u 1")
        let readers = try await busctl(fixture, [
            "call", ShmBusProtocol.registryName, ShmBusProtocol.registryPath.rawValue, Registry1.name, "ChannelReaders", "s", "stats/count",
        ])
        #expect(readers.contains("\"\(reader.connection.uniqueName)\" \(getuid()) \(getpid()) 1"), "\(readers)")
        reader.connection.close()
        let deadline = ContinuousClock.now + .seconds(30)
        while try await property(fixture, "stats/count", "ReaderCount") != "u 0", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await property(fixture, "stats/count", "ReaderCount") == "u 0", "a departed reader is forgotten")
        await publisher.close()
    }

    /// dbus-monitor hears statistics change only while a connection watches; the watch
    /// ends when the watcher leaves.
    @Test(.timeLimit(.minutes(5))) func changesAreSignalledOnlyWhileSomeoneWatches() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "stats/watch", on: .address(fixture.address))
        let monitor = try ChildProcess(
            "dbus-monitor", ["--address", fixture.address, "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"],
            stdout: .pipe)
        defer { monitor.signal(SIGKILL) }
        let output = Lock("")
        let reading = Task { for try await line in monitor.lines() { output.withLock { $0 += line + "\n" } } }
        defer { reading.cancel() }
        try await UrgentSignalTests.eventually("dbus-monitor listens") { output.withLock { $0.contains("NameLost") } }
        for _ in 0..<50 { try publisher.publish([UInt8](repeating: 1, count: 64)) }
        try await Task.sleep(for: .milliseconds(2500))
        #expect(!output.withLock { $0.contains("PublishedChunks") }, "nobody watches: no statistics signalled")

        let watcher = try await fixture.client()
        try await ShmBusProtocol.registry(on: watcher.connection).watchStatistics()
        try await UrgentSignalTests.eventually("the watch signals the channel's figures") {
            output.withLock { $0.contains("PublishedChunks") && $0.contains("ChunkRate") }
        }
        // Once the figures stop changing, so do the signals; after the watcher leaves,
        // none come even when they change again.
        watcher.connection.close()
        try await Task.sleep(for: .milliseconds(1500))
        let before = output.withLock { $0.components(separatedBy: "PublishedChunks").count }
        for _ in 0..<50 { try publisher.publish([UInt8](repeating: 2, count: 64)) }
        try await Task.sleep(for: .milliseconds(2500))
        #expect(output.withLock { $0.components(separatedBy: "PublishedChunks").count } == before, "the watch ended with the watcher")
        await publisher.close()
    }
}
