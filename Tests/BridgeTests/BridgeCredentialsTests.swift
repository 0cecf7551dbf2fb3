import Foundation
import NATS
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// The bridge passes its NATS credentials and TLS options through (docs/BRIDGE.md,
/// "Security"), against a real nats-server that requires them: one node with
/// JetStream inside the ShmBus host's namespace. A server that refuses them ends the
/// bridge with status 69 and one line naming it; it is not asked again forever.
extension BridgeTests {
    /// How the server is secured, and what the bridge is given.
    enum Access: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case token, userPassword, tls
        var testDescription: String { rawValue }
    }

    /// One host, its nats-server configured for `access`, and the files the bridge reads.
    final class SecuredHost {
        let network: TestNetwork
        let host: ShmBusHost
        let server: NATSServer
        let url: String
        let access: Access

        init(_ access: Access) async throws {
            self.access = access
            network = try await TestNetwork()
            do {
                host = try await ShmBusHost(namespace: try await network.addMachine("s", host: 1), address: "198.18.0.1")
                let files = host.directory
                try "right-token\n".write(to: files.appendingPathComponent("right-token"), atomically: true, encoding: .utf8)
                try "wrong-token\n".write(to: files.appendingPathComponent("wrong-token"), atomically: true, encoding: .utf8)
                try "right-password\n".write(to: files.appendingPathComponent("right-password"), atomically: true, encoding: .utf8)
                try "wrong-password\n".write(to: files.appendingPathComponent("wrong-password"), atomically: true, encoding: .utf8)
                let extra: String
                switch access {
                case .token:
                    extra = "authorization { token: \"right-token\" }\n"
                case .userPassword:
                    extra = "authorization { user: \"bridge\", password: \"right-password\" }\n"
                case .tls:
                    try await Self.makeCertificates(in: files)
                    extra = """
                        tls {
                          cert_file: "\(files.appendingPathComponent("server.pem").path)"
                          key_file: "\(files.appendingPathComponent("server.key").path)"
                        }

                        """
                }
                server = try await NATSServer(
                    name: "secured-\(access.rawValue)", namespace: host.namespace, extraConfiguration: extra)
                // The server listens on the namespace's loopback: the bridge and the
                // checks run inside it.
                let address = server.clientURL.dropFirst("nats://".count)
                url = (access == .tls ? "tls://" : "nats://") + address
            } catch {
                network.tearDown()
                throw error
            }
        }

        /// A CA, a server certificate it signs for 127.0.0.1, and a second CA that
        /// signed nothing here (the untrusted one), made with openssl.
        static func makeCertificates(in directory: URL) async throws {
            func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
            try "subjectAltName=IP:127.0.0.1\n".write(to: directory.appendingPathComponent("san.ext"), atomically: true, encoding: .utf8)
            let steps: [[String]] = [
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shmbus test CA",
                 "-keyout", path("ca.key"), "-out", path("ca.pem")],
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shmbus other CA",
                 "-keyout", path("other-ca.key"), "-out", path("other-ca.pem")],
                ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", path("server.key"), "-out", path("server.csr")],
                ["x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                 "-CAcreateserial", "-days", "2", "-extfile", path("san.ext"), "-out", path("server.pem")],
            ]
            for step in steps {
                let openssl = try ChildProcess("openssl", step, stdout: .pipe, stderr: .pipe)
                let output = try await openssl.collectOutput()
                let ended = await openssl.exit()
                guard ended == .exited(0) else {
                    throw TestFailure("openssl \(step.joined(separator: " ")) \(ended): \(String(decoding: output.stderr, as: UTF8.self))")
                }
            }
        }

        /// The bridge's options that the server accepts (`right`) or refuses.
        func credentials(right: Bool) -> [String] {
            let file = { (name: String) in self.host.directory.appendingPathComponent(name).path }
            switch access {
            case .token: return ["--token-file", file(right ? "right-token" : "wrong-token")]
            case .userPassword: return ["--user", "bridge", "--password-file", file(right ? "right-password" : "wrong-password")]
            case .tls: return ["--tls", "--tls-ca", file(right ? "ca.pem" : "other-ca.pem")]
            }
        }

        /// The same, for the test's own NATS connection.
        var rightOptions: NATSConnection.Options {
            var options = NATSConnection.Options(servers: [url])
            switch access {
            case .token: options.token = "right-token"
            case .userPassword:
                options.user = "bridge"
                options.password = "right-password"
            case .tls:
                options.tls = true
                options.tlsCAFile = host.directory.appendingPathComponent("ca.pem").path
            }
            return options
        }

        func bridge(right: Bool) -> [String] {
            [BuiltProducts.path("shmbus"), "bridge", "--bus", host.bus.address, "--stream", "SECURED", "--name", "s",
             "--server", url, "--export", "lab/probe", "--log-level", "info"] + credentials(right: right)
        }

        func tearDown() {
            host.stop()
            network.tearDown()
        }
    }

    @Test("the bridge reaches a nats-server that requires a token, a user and password, or TLS with its CA", arguments: Access.allCases)
    func credentialsPassThrough(_ access: Access) async throws {
        let secured = try await SecuredHost(access)
        defer { secured.tearDown() }
        let publisher = try await Publisher.open(channel: "lab/probe", on: secured.host.bus.bus)
        let bytes = Self.payload(50_000, seed: 9)
        let sequence = try publisher.publish(bytes).sequence
        let bridge = try await secured.host.start("bridge-\(access.rawValue)", secured.bridge(right: true))
        defer { bridge.stop() }
        let options = secured.rightOptions
        do {
            try await Self.waitForStream("SECURED", createdBy: bridge)
            try await waitUntil("chunk \(sequence) in the stream") {
                let stored = try? await TestNetwork.onMachine(secured.host.namespace) {
                    let nats = try NATSConnection(options: options)
                    defer { nats.close() }
                    return try nats.lastMessage(stream: "SECURED", subject: "shmbus.SECURED.>").map {
                        ($0.header("Shmbus-Sequence"), Array($0.data))
                    }
                }
                guard let (stored, data) = stored ?? nil else { return false }
                #expect(stored == String(sequence))
                #expect(data == bytes)
                return true
            }
        } catch {
            throw TestFailure(
                "\(error)\nbridge:\n\(bridge.logText.suffix(4000))\nnats-server:\n\(secured.server.process?.logText.suffix(4000) ?? "")")
        }
        await publisher.close()
    }

    @Test("a bad token, a wrong password or an untrusted CA ends the bridge: status 69, one line naming the server and why", arguments: Access.allCases)
    func refusedCredentialsEndTheBridge(_ access: Access) async throws {
        let secured = try await SecuredHost(access)
        defer { secured.tearDown() }
        let bridge = try ChildProcess(
            "ip", ["netns", "exec", secured.host.namespace] + secured.bridge(right: false), stdout: .null, stderr: .pipe)
        let pid = bridge.pid
        // A bridge that retried forever would never end: killed after a minute, it
        // fails the test below (killed, not exited 69).
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            kill(pid, SIGKILL)
        }
        let output = try await bridge.collectOutput()
        let ended = await bridge.exit()
        watchdog.cancel()
        let stderr = String(decoding: output.stderr, as: UTF8.self)
        #expect(ended == .exited(69), "\(stderr)")
        let last = stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("shmbus: "), "\(stderr)")
        #expect(last.contains(secured.url), "names the server: \(last)")
        switch access {
        case .token, .userPassword: #expect(last.contains("Authorization Violation"), "\(last)")
        case .tls: #expect(last.contains("SSL"), "\(last)")
        }
        #expect(!stderr.contains("yet"), "not tried again: \(stderr)")
    }

    @Test("a server not there yet is not a refusal: the bridge keeps trying and exports once it starts")
    func anUnreachableServerIsTriedAgain() async throws {
        let network = try await TestNetwork()
        defer { network.tearDown() }
        let host = try await ShmBusHost(namespace: try await network.addMachine("u", host: 1), address: "198.18.0.1")
        defer { host.stop() }
        let publisher = try await Publisher.open(channel: "lab/probe", on: host.bus.bus)
        let sequence = try publisher.publish(Self.payload(1_000, seed: 4)).sequence
        // The namespace is this test's own: nothing else listens on its loopback.
        let address = "127.0.0.1:14222"
        let bridge = try await host.start(
            "bridge-unreachable",
            [BuiltProducts.path("shmbus"), "bridge", "--bus", host.bus.address, "--stream", "LATER", "--name", "u",
             "--server", "nats://\(address)", "--export", "lab/probe", "--log-level", "info"])
        defer { bridge.stop() }
        try await waitUntil("the bridge to find no server") { bridge.logText.contains("cannot connect to [\"nats://\(address)\"] yet") }
        #expect(bridge.isRunning)
        let server = try await NATSServer(name: "later", listen: address, namespace: host.namespace)
        let url = server.clientURL
        do {
            try await Self.waitForStream("LATER", createdBy: bridge)
            try await waitUntil("chunk \(sequence) in the stream") {
                let stored = try? await TestNetwork.onMachine(host.namespace) {
                    let nats = try NATSConnection(options: .init(servers: [url]))
                    defer { nats.close() }
                    return try nats.lastMessage(stream: "LATER", subject: "shmbus.LATER.>")?.header("Shmbus-Sequence")
                }
                return stored == String(sequence)
            }
        } catch {
            throw TestFailure(
                "\(error)\nbridge:\n\(bridge.logText.suffix(4000))\nnats-server:\n\(server.process?.logText.suffix(4000) ?? "")")
        }
        await publisher.close()
    }

    /// Waits for `bridge` to log that it has created `stream`, before anything asks a
    /// single node for the stream's messages. nats-server 2.9.10 (Debian's) adds a new
    /// stream to its account before it sets up the stream's store
    /// (`addStreamWithAssignment` in server/stream.go), and a `STREAM.MSG.GET` that
    /// arrives in between dereferences the missing store and kills the server; a
    /// cluster answers only from an elected leader, which has its store.
    static func waitForStream(_ stream: String, createdBy bridge: SupervisedProcess) async throws {
        try await waitUntil("the bridge to create stream '\(stream)'") { bridge.logText.contains("stream '\(stream)': ") }
    }
}
