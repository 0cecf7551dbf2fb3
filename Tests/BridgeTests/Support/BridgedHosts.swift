import Foundation
import NATS
import ShmBus
import TestSupport

/// Hosts A and B and a three-node JetStream cluster on a test network, with `shmbus
/// bridge` started inside A (exporting) and B (importing) as real processes.
final class BridgedHosts {
    let network: TestNetwork
    let a: ShmBusHost
    let b: ShmBusHost
    let cluster: JetStreamCluster
    let stream: String
    private(set) var exporter: SupervisedProcess?
    private(set) var importer: SupervisedProcess?
    let exports: [String]
    let imports: [String]
    let extra: [String]
    /// The Unix user A's bridge runs as (nil: root, as the test process).
    let exporterUser: String?

    init(stream: String, exports: [String], imports: [String], extra: [String] = [], exporterUser: String? = nil) async throws {
        network = try await TestNetwork()
        do {
            a = try await ShmBusHost(
                namespace: try await network.addMachine("a", host: 1), address: "198.18.0.1", everyUser: exporterUser != nil)
            b = try await ShmBusHost(namespace: try await network.addMachine("b", host: 2), address: "198.18.0.2")
            cluster = try await JetStreamCluster(network: network)
        } catch {
            network.tearDown()
            throw error
        }
        self.stream = stream
        self.exports = exports
        self.imports = imports
        self.extra = extra
        self.exporterUser = exporterUser
    }

    func bridgeArguments(bus: String, name: String) -> [String] {
        [BuiltProducts.path("shmbus"), "bridge", "--bus", bus, "--stream", stream, "--name", name, "--replicas", "3", "--log-level", "debug"]
            + cluster.urls.flatMap { ["--server", $0] } + extra
    }

    func startExporter() async throws {
        exporter = try await a.start(
            "bridge-export", bridgeArguments(bus: a.bus.address, name: "a") + exports.flatMap { ["--export", $0] }, as: exporterUser)
    }

    func startImporter() async throws {
        importer = try await b.start(
            "bridge-import", bridgeArguments(bus: b.bus.address, name: "b") + imports.flatMap { ["--import", $0] })
    }

    /// Kills B's bridge at once (SIGKILL), as a crash would.
    func killImporter() {
        importer?.signal(SIGKILL)
        importer?.stop()
    }

    var logs: String {
        "exporter:\n\(exporter?.logText.suffix(4000) ?? "")\nimporter:\n\(importer?.logText.suffix(4000) ?? "")"
    }

    /// Waits until the stream's newest message on `subject` is part of chunk `sequence`
    /// (asked from host A, inside the test network).
    func waitForStored(subject: String, sequence: UInt64) async throws {
        let urls = cluster.urls
        let stream = stream
        try await reportingLogs {
            try await waitUntil("the stream to hold chunk \(sequence) on \(subject)") {
                // Before the cluster and the stream are up, connecting fails: not yet.
                let stored = try? await TestNetwork.onMachine(self.a.namespace) {
                    let nats = try NATSConnection(options: .init(servers: urls))
                    return try nats.lastMessage(stream: stream, subject: subject)?.header("Shmbus-Sequence") == String(sequence)
                }
                return stored ?? false
            }
        }
    }

    /// Runs `body`; if it fails, the bridges' logs go with the failure.
    func reportingLogs<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw TestFailure("\(error)\n\(logs)")
        }
    }

    /// Stops everything, namespaces last (processes inside would keep them alive).
    func tearDown() {
        exporter?.stop()
        importer?.stop()
        a.stop()
        b.stop()
        cluster.stop()
        network.tearDown()
    }
}

/// Runs `body`, failing with `what` if it has not finished after `timeout` (which only
/// keeps a broken bridge from hanging the suite; nothing measures it).
func withDeadline<T: Sendable>(
    _ what: String, _ timeout: Duration = .seconds(120), _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TestFailure("timed out: \(what)") }
        return value
    }
}
