import Foundation
import Glibc

/// A real `nats-server` with JetStream, started by a test: its configuration, store
/// and log in a directory of its own; alone on a random loopback port, or one node of
/// a cluster on a fixed address (inside a network namespace). Killing it and starting
/// it again keeps its store, as a restarted node would.
final class NATSServer {
    struct Cluster {
        var name = "shmbus-test"
        /// This node's cluster address and every node's, itself included.
        var listen: String
        var routes: [String]
    }

    let name: String
    let directory: URL
    /// `host:port` to listen on; port -1 picks a free one (read back from the log).
    let listen: String
    let cluster: Cluster?
    /// The network namespace to run in (nil: this process's).
    let namespace: String?
    let maxPayload: String
    /// More configuration, appended as it is (`authorization { … }`, `tls { … }`).
    let extraConfiguration: String
    private(set) var process: SupervisedProcess?
    private(set) var clientURL = ""

    init(
        name: String, listen: String = "127.0.0.1:-1", cluster: Cluster? = nil, namespace: String? = nil,
        maxPayload: String = "8MB", extraConfiguration: String = "", directory: URL? = nil
    ) async throws {
        self.extraConfiguration = extraConfiguration
        self.name = name
        self.listen = listen
        self.cluster = cluster
        self.namespace = namespace
        self.maxPayload = maxPayload
        self.directory =
            directory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "shmbus-nats-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        try await start()
        try await waitUntilReady()
    }

    var configuration: String {
        var text = """
            server_name: "\(name)"
            listen: "\(listen)"
            max_payload: \(maxPayload)
            jetstream {
              store_dir: "\(directory.appendingPathComponent("store").path)"
              max_memory_store: 64MB
              max_file_store: 8GB
            }

            """
        if let cluster {
            text += """
                cluster {
                  name: "\(cluster.name)"
                  listen: "\(cluster.listen)"
                  routes: [\(cluster.routes.map { "\"nats-route://\($0)\"" }.joined(separator: ", "))]
                }

                """
        }
        return text + extraConfiguration
    }

    private func start() async throws {
        let config = directory.appendingPathComponent("server.conf")
        try configuration.write(to: config, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("server.log")
        // A new log for each start: readiness is read from it.
        try? FileManager.default.removeItem(at: log)
        let command = (namespace.map { ["ip", "netns", "exec", $0] } ?? []) + ["nats-server", "-c", config.path]
        process = try await SupervisedProcess(command, log: log)
    }

    /// Waits for "Server is ready" in the log, and reads the client port from it.
    func waitUntilReady() async throws {
        try await waitUntil("nats-server \(name) to start (log: \(directory.path)/server.log)") {
            guard let process, process.isRunning else {
                throw TestFailure("nats-server \(name) exited: \(self.process?.logText ?? "")")
            }
            return process.logText.contains("Server is ready")
        }
        let log = process?.logText ?? ""
        guard let range = log.range(of: "Listening for client connections on ") else {
            throw TestFailure("nats-server \(name) did not say where it listens: \(log)")
        }
        let address = log[range.upperBound...].prefix { !$0.isWhitespace }
        clientURL = "nats://\(address)"
    }

    /// Kills the node at once (SIGKILL): no goodbye to the cluster, its store as it was.
    func kill() {
        process?.signal(SIGKILL)
        process?.stop()
        process = nil
    }

    /// Starts the node again on the same store and addresses.
    func restart() async throws {
        kill()
        try await start()
        try await waitUntilReady()
    }

    deinit {
        process?.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
