import DBus
import Foundation
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport

/// One ShmBus machine of a ``TestNetwork``: its own dbus-daemon and `shmbus daemon`
/// (the registry), both running inside the machine's network namespace. The bus listens
/// on a socket file, which the test process reaches from outside the namespace (a
/// network namespace separates networks, not files), so the test publishes and
/// subscribes on each machine directly.
final class ShmBusHost {
    let namespace: String
    let address: String
    let bus: PrivateBus
    private(set) var registry: SupervisedProcess
    let directory: URL

    /// With `everyUser`, processes of other Unix users may connect to its bus (a bridge
    /// run as an ordinary user, say).
    init(namespace: String, address: String, everyUser: Bool = false) async throws {
        self.namespace = namespace
        self.address = address
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(namespace)-host")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // dbus-daemon inside the namespace: `ip netns exec` enters it and execs the
        // daemon under the same pid, which PrivateBus's supervisor stops. (Not through
        // a wrapper script written here: while another test forked, exec'ing the new
        // file failed with ETXTBSY, "Text file busy".)
        bus = try PrivateBus(everyUser: everyUser, launcher: ["ip", "netns", "exec", namespace])
        registry = try await Self.startRegistry(namespace: namespace, bus: bus, directory: directory)
    }

    /// `shmbus daemon` on `bus` inside `namespace`, once it owns the registry's name.
    private static func startRegistry(namespace: String, bus: PrivateBus, directory: URL) async throws -> SupervisedProcess {
        let registry = try await SupervisedProcess(
            inside(namespace, [BuiltProducts.path("shmbus"), "daemon", "--bus", bus.address, "--log-level", "warning"]),
            log: directory.appendingPathComponent("registry.log"))
        try await waitUntil("the registry on \(namespace)") {
            let connection = try await DBusConnection.connect(to: bus.bus)
            defer { connection.close() }
            return try await connection.nameOwner(of: "org.shmbus.Registry1") != nil
        }
        return registry
    }

    /// Stops this machine's registry until ``startRegistryAgain()``.
    func stopRegistry() {
        registry.stop()
    }

    /// Starts the registry again after ``stopRegistry()``.
    func startRegistryAgain() async throws {
        registry = try await Self.startRegistry(namespace: namespace, bus: bus, directory: directory)
    }

    /// `command` run inside `namespace`.
    static func inside(_ namespace: String, _ command: [String]) -> [String] {
        ["ip", "netns", "exec", namespace] + command
    }

    /// Starts `command` inside this machine, logging to `name`.log in its directory; as
    /// `user` if given (setpriv drops root after `ip netns exec` entered the namespace,
    /// and execs, so the process keeps the pid the supervisor kills).
    func start(_ name: String, _ command: [String], as user: String? = nil) async throws -> SupervisedProcess {
        let command = user.map { AccessUsers.command(command, as: $0) } ?? command
        return try await SupervisedProcess(Self.inside(namespace, command), log: directory.appendingPathComponent("\(name).log"))
    }

    /// Stops the registry and the bus (before the network is torn down).
    func stop() {
        registry.stop()
        bus.stop()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// A JetStream cluster of three nodes, each a machine of the network, every stream on
/// it replicated three times if asked to.
final class JetStreamCluster {
    let nodes: [NATSServer]
    /// The client URLs of all three nodes.
    let urls: [String]

    init(network: TestNetwork, firstHost: Int = 11) async throws {
        let hosts = (0..<3).map { "198.18.0.\(firstHost + $0)" }
        var nodes: [NATSServer] = []
        for (index, host) in hosts.enumerated() {
            let namespace = try await network.addMachine("nats\(index + 1)", host: firstHost + index)
            let cluster = NATSServer.Cluster(listen: "\(host):6222", routes: hosts.map { "\($0):6222" })
            nodes.append(
                try await NATSServer(name: "n\(index + 1)", listen: "\(host):4222", cluster: cluster, namespace: namespace))
        }
        self.nodes = nodes
        urls = hosts.map { "nats://\($0):4222" }
    }

    func stop() {
        for node in nodes { node.kill() }
    }
}
