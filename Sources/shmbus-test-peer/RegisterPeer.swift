// `register`: the registry at thousands of segments, driven from a process of its own,
// so that a profiler attached to the daemon (or to the bus) sees the daemon's and the
// bus's share of a registration and nothing of the test's (docs/RELIABILITY.md,
// "Registry scale", says how the profile was taken).
import DBus
import Foundation
import SharedSegments
import ShmBus
import ShmBusProtocol

/// Prints "ready", then for each line "COUNT CONCURRENCY" on stdin opens a connection
/// of its own, registers COUNT segments of channels `PREFIX-ROUND-i` on it,
/// CONCURRENCY at a time (1: one after the other, as a publisher does), and prints
/// "registered COUNT seconds S". Every connection and its segments stay until stdin
/// closes, so each round registers with all earlier rounds' segments held.
///
/// A line "floor COUNT" measures what a registration cannot cost less than, COUNT
/// calls one after the other each: `GetNameOwner`, which the bus answers itself;
/// `Peer.Ping` of the registry, which goes through the bus to the daemon and is
/// answered by libdbus there; and `Lookup` of a channel that does not exist, which
/// goes through the daemon's handlers and its registry actor. It prints "floor bus S
/// ping S lookup S".
func registerRounds(address: String, prefix: String) async throws {
    var clients: [RegistryClient] = []
    say("ready")
    while let line = readLine() {
        if line.hasPrefix("floor ") {
            guard let count = Int(line.dropFirst(6)), count > 0 else { fail("expected 'floor COUNT', got '\(line)'") }
            say(try await floor(address: address, count: count))
            continue
        }
        let words = line.split(separator: " ").compactMap { Int($0) }
        guard words.count == 2, words[0] >= 0, words[1] > 0 else { fail("expected 'COUNT CONCURRENCY', got '\(line)'") }
        let (count, concurrency) = (words[0], words[1])
        let client = RegistryClient(connection: try await DBusConnection.connect(to: .address(address)))
        clients.append(client)
        let round = clients.count
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    for index in stride(from: lane, to: count, by: concurrency) {
                        // The writer goes once registered: the registry holds its own
                        // read-only descriptor.
                        let writer = try ChannelWriter(channel: "\(prefix)-\(round)-\(index)", capacity: 16 << 10)
                        _ = try await client.registerSegment(channel: writer.channel, fd: writer.current.fileDescriptor)
                    }
                }
            }
            try await group.waitForAll()
        }
        say("registered \(count) seconds \(String(format: "%.3f", seconds(ContinuousClock.now - start)))")
    }
    withExtendedLifetime(clients) {}
}

/// "floor bus S ping S lookup S": see ``registerRounds(address:prefix:)``.
func floor(address: String, count: Int) async throws -> String {
    let client = RegistryClient(connection: try await DBusConnection.connect(to: .address(address)))
    defer { client.connection.close() }
    func timed(_ call: () async throws -> Void) async throws -> String {
        let start = ContinuousClock.now
        for _ in 0..<count { try await call() }
        return String(format: "%.3f", seconds(ContinuousClock.now - start))
    }
    let bus = try await timed { _ = try await client.connection.nameOwner(of: ShmBusProtocol.registryName) }
    let ping = try await timed {
        try await client.connection.ping(ShmBusProtocol.registryName)
    }
    let lookup = try await timed { _ = try? await client.lookup(channel: "floor-none", key: "k") }
    return "floor bus \(bus) ping \(ping) lookup \(lookup)"
}
