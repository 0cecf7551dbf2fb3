import DBus
import Foundation
import NATS
import ShmBus
import TestSupport
import Testing

/// The two-host harness itself: hosts A and B in network namespaces, each with its own
/// bus and registry, and a three-node JetStream cluster reachable from both.
@Suite("Two hosts and a JetStream cluster", .serialized, .enabled(if: TestNetwork.available, "\(TestNetwork.unavailableReason ?? "")"))
struct NetworkHarnessTests {
    @Test("a replicated stream made from A is read from B; the hosts' registries know only their own channels")
    func hostsShareOnlyTheNetwork() async throws {
        let network = try await TestNetwork()
        defer { network.tearDown() }
        let a = try await ShmBusHost(namespace: try await network.addMachine("a", host: 1), address: "198.18.0.1")
        defer { a.stop() }
        let b = try await ShmBusHost(namespace: try await network.addMachine("b", host: 2), address: "198.18.0.2")
        defer { b.stop() }
        let cluster = try await JetStreamCluster(network: network)
        defer { cluster.stop() }
        let urls = cluster.urls

        let stored = try await TestNetwork.onMachine(a.namespace) { () throws -> UInt64 in
            let nats = try NATSConnection(options: .init(servers: urls))
            var stream = StreamConfiguration(name: "HARNESS", subjects: ["harness.>"])
            stream.replicas = 3
            // The cluster elects its JetStream leader after its nodes found each other.
            let info = try Self.retrying { try nats.addOrUpdateStream(stream) }
            #expect(info.replicas == 3)
            return try Array("from A".utf8).withUnsafeBytes {
                try nats.publish(subject: "harness.hello", headers: [("From", "A")], data: $0).sequence
            }
        }
        let (text, from) = try await TestNetwork.onMachine(b.namespace) { () throws -> (String, String?) in
            let nats = try NATSConnection(options: .init(servers: urls))
            let message = try #require(try nats.lastMessage(stream: "HARNESS", subject: "harness.hello"))
            #expect(message.streamSequence == stored)
            return (String(decoding: message.data, as: UTF8.self), message.header("From"))
        }
        #expect(text == "from A")
        #expect(from == "A")

        let publisher = try await Publisher.open(channel: "harness/only-on-a", on: a.bus.bus)
        try publisher.publish(Array("x".utf8))
        let onA = try await RegistryClient(connection: try await DBusConnection.connect(to: a.bus.bus)).channels()
        let onB = try await RegistryClient(connection: try await DBusConnection.connect(to: b.bus.bus)).channels()
        #expect(onA.map(\.name) == ["harness/only-on-a"])
        #expect(onB.isEmpty)
        await publisher.close()
    }

    /// Retries `body` for up to a minute while JetStream is not ready yet.
    static func retrying<T>(_ body: () throws -> T) throws -> T {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                return try body()
            } catch {
                if ContinuousClock.now > deadline { throw error }
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }
}
