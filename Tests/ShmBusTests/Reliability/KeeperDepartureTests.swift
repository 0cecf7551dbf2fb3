import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusProtocol
import ShmBusSystem
import TestSupport
import Testing

/// A publisher leaves while the registry cannot see it (stopped, then killed): the
/// keeper saw the departure on the bus itself, so the restarted registry counts the
/// ttl from the departure, not from its own start (which would give the segment its
/// whole ttl again).
@Suite struct KeeperDepartureTests {
    @Test(.timeLimit(.minutes(5))) func aTtlCountsFromTheDepartureEvenIfTheRegistryNeverSawIt() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-departure-\(UInt32.random(in: 0...UInt32.max))")
        try Data("kept".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let publisher = try ChildProcess(
            fixture.shmbus,
            ["publish", "--bus", fixture.address, "--channel", "departure/ttl", "--key", "k", "--persistent", "--ttl", "60", "--hold", file.path],
            stdout: .pipe, stderr: .inherit)
        defer { publisher.signal(SIGKILL) }
        // "segment … offset … length … sequence N", once the chunk is registered and kept.
        let line = try #require(try await publisher.readLine())
        #expect(line.hasPrefix("segment "), "\(line)")
        let segment = try #require(try await client.segments(of: "departure/ttl").first)
        var daemon = try #require(fixture.daemon)
        // The registry stops before the publisher goes, and is killed before it can run
        // again: it never learns of the departure, so it never tells the keeper.
        daemon.signal(SIGSTOP)
        publisher.signal(SIGKILL)
        _ = publisher.waitUntilExit()
        let departed = RealtimeClock.now() / 1000
        try await Task.sleep(for: .seconds(3))
        daemon.signal(SIGKILL)
        daemon.signal(SIGCONT)
        _ = daemon.waitUntilExit()
        daemon = try RegistryFixture.startDaemon(fixture.shmbus, address: fixture.address)
        defer { daemon.signal(SIGKILL) }
        try await fixture.waitForRegistry()
        let expires = try await ShmBusProtocol.segment(segment.name, on: client.connection).expires
        let expected = departed + 60_000_000
        let drift = expires > expected ? expires - expected : expected - expires
        print("keeper departure: expiry \(expires), departure + ttl \(expected), drift \(Double(drift) / 1000) ms")
        // Counted from the restart it would be 3 s or more later.
        #expect(drift < 1_500_000, "the ttl counts from the departure, not from the restart")
    }
}
