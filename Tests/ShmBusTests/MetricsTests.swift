import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// `shmbus daemon --metrics`, scraped with curl and read as a Prometheus scraper reads
/// it, against what busctl reads from the same registry; and the library's counters
/// seen by a real swift-metrics backend in a process of its own.
@Suite struct MetricsTests {
    /// A daemon on a bus of its own with `--metrics`, and the URL it logged.
    final class MetricsDaemon: Sendable {
        let bus: PrivateBus
        let daemon: ChildProcess
        let url: String

        init(_ arguments: [String] = ["--metrics", "127.0.0.1:0"]) async throws {
            bus = try PrivateBus()
            // Through sh only to have the log on stdout, where it can be read line by line.
            let command = ([BuiltProducts.path("shmbus"), "daemon", "--bus", bus.address, "--log-level", "notice"] + arguments)
                .map { "'\($0)'" }.joined(separator: " ")
            daemon = try ChildProcess("/bin/sh", ["-c", "exec \(command) 2>&1"], stdout: .pipe)
            var found: String?
            while found == nil, let line = try await daemon.readLine() {
                found = line.firstMatch(of: /url=(http:\/\/\S+\/metrics)/).map { String($0.output.1) }
            }
            url = try #require(found, "the daemon logs where it serves")
        }

        deinit {
            daemon.signal(SIGKILL)
            daemon.waitUntilExit()
            bus.stop()
        }

        func scrape() async throws -> Exposition {
            let (status, out, err) = try await BuiltProducts.run("curl", ["-sS", "--fail", url])
            #expect(status == .exited(0), "curl: \(err)")
            return Exposition(out)
        }

        func property(_ path: String, _ interface: String, _ name: String) async throws -> Double {
            let (status, out, err) = try await BuiltProducts.run(
                "busctl", ["--address=\(bus.address)", "get-property", ShmBusProtocol.registryName, path, interface, name])
            #expect(status == .exited(0), "busctl: \(err)")
            let parts = out.split(separator: " ")
            if parts.first == "ao" { return Double(parts.count > 1 ? Int(parts[1]) ?? -1 : -1) }
            return try #require(parts.count == 2 ? Double(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) : nil, "\(out)")
        }
    }

    @Test(.timeLimit(.minutes(5))) func theDaemonServesWhatBusctlReads() async throws {
        let daemon = try await MetricsDaemon()
        let name = "metrics/frames"
        var options = Publisher.Options()
        options.capacity = 64 << 10
        let publisher = try await Publisher.open(channel: name, on: .address(daemon.bus.address), options: options)
        for index in 0..<1_000 { try publisher.publish([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 100)) }
        await publisher.flush()
        let reader = RegistryClient(connection: try await DBusConnection.connect(to: daemon.bus.bus))
        _ = try await reader.openSegment(publisher.currentSegment)

        let before = try await daemon.scrape()
        let missing = await #expect(throws: ShmBusError.self) { try await reader.lookup(channel: name, key: "no-such-key") }
        #expect(missing?.code == .notFound)
        let metrics = try await daemon.scrape()
        let channel = "{channel=\"\(name)\"}"
        let path = ShmBusProtocol.channelPath(name).rawValue
        let registry = ShmBusProtocol.registryPath.rawValue
        for (metric, property) in [
            ("shmbus_channel_published_chunks_total", "PublishedChunks"), ("shmbus_channel_published_bytes_total", "PublishedBytes"),
            ("shmbus_channel_collections_total", "Collections"), ("shmbus_channel_committed_bytes", "CommittedBytes"),
            ("shmbus_channel_live_bytes", "LiveBytes"), ("shmbus_channel_readers", "ReaderCount"),
            ("shmbus_channel_generation", "Generation"), ("shmbus_channel_segments", "Segments"),
            ("shmbus_channel_time_to_live_seconds", "TimeToLive"),
        ] {
            let expected = try await daemon.property(path, Channel1.name, property)
            #expect(metrics[metric + channel] == expected, "\(metric) against busctl's \(property)")
        }
        #expect(metrics["shmbus_channel_published_chunks_total" + channel] == 1_000)
        #expect((metrics["shmbus_channel_collections_total" + channel] ?? 0) > 0, "64 KiB segments took 192,000 bytes")
        #expect(metrics["shmbus_channel_readers" + channel] == 1)
        #expect(metrics.types["shmbus_channel_published_chunks_total"] == "counter")
        #expect(metrics.types["shmbus_channel_live_bytes"] == "gauge")
        for (metric, property) in [
            ("shmbus_registry_channels", "ChannelCount"), ("shmbus_registry_segments", "SegmentCount"),
            ("shmbus_registry_capacity_bytes", "TotalBytes"),
        ] {
            #expect(metrics[metric] == (try await daemon.property(registry, Registry1.name, property)), "\(metric)")
        }

        // Calls by method and errors by D-Bus error name, counted between two scrapes.
        let lookups = "shmbus_registry_calls_total{method=\"Lookup\"}"
        let notFound = "shmbus_registry_errors_total{method=\"Lookup\",error=\"org.shmbus.Error.NotFound\"}"
        #expect(metrics[lookups] == (before[lookups] ?? 0) + 1)
        #expect(metrics[notFound] == (before[notFound] ?? 0) + 1)
        #expect((metrics["shmbus_registry_calls_total{method=\"OpenSegment\"}"] ?? 0) >= 1)
        #expect(metrics.types["shmbus_registry_calls_total"] == "counter")
        // Where calls spent their time: the lookup, from a client with nothing else
        // pending, is one more call of an idle sender in every phase.
        #expect(metrics.types["shmbus_registry_call_duration_seconds"] == "histogram")
        for phase in ["loop", "queued", "handler", "reply"] {
            let count = "shmbus_registry_call_duration_seconds_count{phase=\"\(phase)\",sender=\"idle\"}"
            #expect((metrics[count] ?? 0) >= (before[count] ?? 0) + 1, "\(count)")
        }

        // The process: its descriptors as /proc lists them, and its memory.
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.daemon.pid)/fd").count
        let served = try #require(metrics["process_open_fds"])
        #expect(abs(served - Double(descriptors)) <= 2, "served \(served), /proc lists \(descriptors)")
        #expect((metrics["process_resident_memory_bytes"] ?? 0) > Double(1 << 20))
        #expect((metrics["process_max_fds"] ?? 0) > 0)
        #expect((metrics["shmbus_registry_segment_descriptors"] ?? 0) >= 1)

        // A channel that is gone is gone from the text too.
        reader.connection.close()
        await publisher.close()
        var after = try await daemon.scrape()
        let deadline = ContinuousClock.now + .seconds(30)
        while after["shmbus_channel_segments" + channel] != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            after = try await daemon.scrape()
        }
        #expect(after["shmbus_channel_segments" + channel] == nil)
    }

    @Test(.timeLimit(.minutes(5))) func onlyMetricsIsServedAndOnlyOnLoopbackUnlessTold() async throws {
        let daemon = try await MetricsDaemon()
        let (_, head, _) = try await BuiltProducts.run("curl", ["-sS", "-I", daemon.url])
        #expect(head.hasPrefix("HTTP/1.1 200 OK"), "\(head)")
        #expect(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
        let base = String(daemon.url.dropLast("/metrics".count))
        let (_, notFound, _) = try await BuiltProducts.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/"])
        #expect(notFound == "404")
        let (_, post, _) = try await BuiltProducts.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", daemon.url])
        #expect(post == "405")
        // Not HTTP at all: 400, and the endpoint still answers the next scrape.
        let port = try #require(daemon.url.firstMatch(of: /:(\d+)\//).map { String($0.output.1) })
        let (_, garbage, _) = try await BuiltProducts.run(
            "/usr/bin/python3", ["-c", """
                import socket; s = socket.create_connection(("127.0.0.1", \(port))); s.sendall(b"garbage\\r\\n\\r\\n")
                print(s.recv(100).split(b"\\r\\n")[0].decode())
                """])
        #expect(garbage.trimmingCharacters(in: .whitespacesAndNewlines) == "HTTP/1.1 400 Bad Request")
        #expect(try await daemon.scrape()["shmbus_registry_channels"] != nil)

        // Another address than loopback is refused before the daemon starts, unless told.
        let bus = try PrivateBus()
        defer { bus.stop() }
        let shmbus = BuiltProducts.path("shmbus")
        let (refused, _, why) = try await BuiltProducts.run(shmbus, ["daemon", "--bus", bus.address, "--metrics", "0.0.0.0:0"])
        #expect(refused == .exited(64), "\(why)")
        #expect(why.contains("not a loopback address") && why.contains("--metrics-any-address"))
        let connection = try await DBusConnection.connect(to: bus.bus)
        #expect(try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil, "no registry was left behind")
        let open = try await MetricsDaemon(["--metrics", "0.0.0.0:0", "--metrics-any-address"])
        let anyPort = try #require(open.url.firstMatch(of: /:(\d+)\//).map { String($0.output.1) })
        let (status, _, err) = try await BuiltProducts.run("curl", ["-sS", "--fail", "http://127.0.0.1:\(anyPort)/metrics"])
        #expect(status == .exited(0), "\(err)")
    }

    /// The library's counters, with a Prometheus backend bootstrapped in a peer process
    /// (MetricsSystem.bootstrap is once per process, and this runner is shared).
    @Test(.timeLimit(.minutes(5))) func theLibraryCountsThroughSwiftMetrics() async throws {
        let fixture = try await RegistryFixture()
        let name = "metrics/library"
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["metrics", fixture.address, name, "1000", "1000", "65536"], stdin: .pipe, stdout: .pipe,
            stderr: .inherit)
        defer { peer.closeStandardInput() }
        var saw = ""
        var text = ""
        while let line = try await peer.readLine(), line != "end" {
            if line.hasPrefix("saw ") { saw = line } else { text += line + "\n" }
        }
        let seen = saw.split(separator: " ").compactMap { Double($0) }
        #expect(seen.count == 3, "\(saw)")
        let (delivered, gaps, missed) = (seen.first ?? -1, seen.dropFirst().first ?? -1, seen.last ?? -1)
        #expect(delivered + missed == 1_000, "every chunk read or reported missing")
        let metrics = Exposition(text)
        let channel = "{channel=\"\(name)\"}"
        #expect(metrics["shmbus_published_chunks_total" + channel] == 1_000)
        #expect(metrics["shmbus_published_bytes_total" + channel] == 1_000_000, "payload bytes")
        #expect(metrics["shmbus_subscriber_gaps_total" + channel] == gaps)
        #expect(metrics["shmbus_subscriber_missed_chunks_total" + channel] == missed)
        #expect(gaps >= 1, "a reader that read nothing while 16 generations went by fell behind")
        let (status, out, _) = try await BuiltProducts.run("busctl", [
            "--address=\(fixture.address)", "get-property", ShmBusProtocol.registryName, ShmBusProtocol.channelPath(name).rawValue,
            Channel1.name, "Collections",
        ])
        #expect(status == .exited(0))
        #expect(metrics["shmbus_collections_total" + channel].map { "t \(Int($0))" } == out.trimmingCharacters(in: .whitespacesAndNewlines),
            "the publisher's collections are the registry's")
    }
}
