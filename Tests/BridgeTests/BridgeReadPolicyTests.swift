import DBus
import Foundation
import NATS
import ShmBus
import ShmBusBridge
import ShmBusPolicy
import TestSupport
import Testing

extension BridgeTests {
    /// The exporter reads its host's channels through the registry with its own
    /// credentials, like any subscriber (docs/BRIDGE.md, "Security"): run as an ordinary
    /// user, it exports a channel whose read policy grants that user and not one that
    /// only its publisher may read, although both are under the prefix it exports.
    @Test(
        "a bridge run as an ordinary user exports the channels granted to it, not the others under its prefix",
        .enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot))
    func theExporterReadsOnlyWhatItsUserMayRead() async throws {
        try AccessUsers.prepare()
        let user = AccessUsers.a
        let hosts = try await BridgedHosts(
            stream: "POLICY", exports: ["lab/"], imports: ["lab/"], extra: ["--import-from", "all"], exporterUser: user)
        defer { hosts.tearDown() }
        var granted = Publisher.Options()
        granted.readers = ReadPolicy(grants: [.user(AccessUsers.uid(user))])
        let shared = try await Publisher.open(channel: "lab/shared", on: hosts.a.bus.bus, options: granted)
        // The default policy: the publisher's own user (root here) only.
        let own = try await Publisher.open(channel: "lab/own", on: hosts.a.bus.bus)
        let secret = Self.payload(5000, seed: 9)
        try own.publish(secret, key: "k")
        let sent = [Self.payload(3000, seed: 1), Self.payload(4000, seed: 2)]
        // Keys of their own: a newer chunk of the same key makes the older obsolete.
        for (index, bytes) in sent.enumerated() { try shared.publish(bytes, key: "k\(index)") }
        try await hosts.startExporter()
        try await hosts.startImporter()
        let seen = try await hosts.reportingLogs { try await Self.read(2, channel: "lab/shared", bus: hosts.b.bus.bus) }
        #expect(seen.map(\.bytes) == sent)
        // A chunk published after the exporter listed the channels, on both channels:
        // once the shared one's has crossed, the other had as long.
        try own.publish(secret, key: "k")
        try shared.publish(Self.payload(100, seed: 3), key: "k2")
        try await hosts.waitForStored(subject: try SubjectLayout(stream: "POLICY").filter(channel: "lab/shared"), sequence: 3)
        let urls = hosts.cluster.urls
        let ownSubjects = try SubjectLayout(stream: "POLICY").filter(channel: "lab/own")
        let stored = try await TestNetwork.onMachine(hosts.a.namespace) {
            try NATSConnection(options: .init(servers: urls)).lastMessage(stream: "POLICY", subject: ownSubjects) != nil
        }
        #expect(!stored, "a chunk of lab/own is in the stream")
        let connection = try await DBusConnection.connect(to: hosts.b.bus.bus)
        defer { connection.close() }
        #expect(try await RegistryClient(connection: connection).channels().map(\.name) == ["lab/shared"])
        await shared.close()
        await own.close()
    }
}
