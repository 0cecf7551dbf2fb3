import Foundation
import Glibc
import ShmBus
import ShmBusSystem

/// Three `nats-server` nodes with JetStream, clustered on loopback, for the bridge part
/// of `shmbus bench`. Loopback leaves a network's latency and bandwidth out of the
/// figures: the part compares the bridge with raw JetStream publishing on the same
/// cluster, not one host with another. The nodes are stopped by ``stop()``; a bench
/// killed with SIGKILL leaves them running, as it leaves its registry.
final class BenchCluster {
    let directory: URL
    let nodes: [ChildProcess]
    /// The nodes' client URLs.
    let urls: [String]

    init() async throws {
        guard ChildProcess.findExecutable("nats-server") != nil else {
            throw ShmBusError(.invalidArgument, "the bridge part needs nats-server on PATH (scripts/ensure-deps.sh installs it)")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-bench-nats-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let clientPorts = try (0..<3).map { _ in try Self.freePort() }
        let routePorts = try (0..<3).map { _ in try Self.freePort() }
        var nodes: [ChildProcess] = []
        for index in 0..<3 {
            let node = directory.appendingPathComponent("n\(index + 1)")
            try FileManager.default.createDirectory(at: node, withIntermediateDirectories: true)
            let routes = routePorts.map { "\"nats-route://127.0.0.1:\($0)\"" }.joined(separator: ", ")
            let config = """
                server_name: "n\(index + 1)"
                listen: "127.0.0.1:\(clientPorts[index])"
                max_payload: 8MB
                jetstream { store_dir: "\(node.appendingPathComponent("store").path)", max_memory_store: 64MB, max_file_store: 16GB }
                cluster { name: "shmbus-bench", listen: "127.0.0.1:\(routePorts[index])", routes: [\(routes)] }

                """
            let file = node.appendingPathComponent("server.conf")
            try config.write(to: file, atomically: true, encoding: .utf8)
            let logPath = node.appendingPathComponent("server.log").path
            FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = try UnixFileDescriptor.open(logPath, O_WRONLY | O_TRUNC)
            nodes.append(try ChildProcess("nats-server", ["-c", file.path], stdout: .fileDescriptor(log), stderr: .fileDescriptor(log)))
        }
        self.nodes = nodes
        urls = clientPorts.map { "nats://127.0.0.1:\($0)" }
    }

    func stop() {
        for node in nodes {
            node.signal(SIGTERM)
            _ = node.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A TCP port on loopback that nothing listens on now (bind to port 0, read it back,
    /// close): the nodes must know each other's route ports before they start.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError.current(call: "socket", context: "finding a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw SystemError.current(call: "bind", context: "finding a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
