import CShmBusLinux
import Foundation
import NATS
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// `shmbus bridge` between two hosts that share only a network, through a three-node
/// JetStream cluster with replicas 3 (docs/BRIDGE.md).
@Suite("shmbus bridge", .serialized, .enabled(if: TestNetwork.available, "\(TestNetwork.unavailableReason ?? "")"))
struct BridgeTests {
    /// What a subscriber on B saw of one chunk.
    struct Seen: Sendable, Equatable {
        var sequence: UInt64
        var key: String
        var bytes: [UInt8]
        var attributes: ChunkAttributes
        var expiry: UInt64
    }

    static func payload(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    /// Publishes chunk `index` of `range` with `base + index` bytes each, recording every
    /// one's bytes under its sequence in `sent`.
    static func publish(_ range: ClosedRange<Int>, base: Int, on publisher: Publisher, into sent: inout [UInt64: [UInt8]]) throws {
        for index in range {
            let bytes = payload(base + index, seed: UInt8(truncatingIfNeeded: index))
            sent[try publisher.publish(bytes).sequence] = bytes
        }
    }

    /// Reads `count` chunks of `channel` on `bus`, from its oldest, failing on a gap.
    static func read(_ count: Int, channel: String, bus: DBusConnection.Bus) async throws -> [Seen] {
        try await withDeadline("\(count) chunks of '\(channel)' on host B") {
            let subscriber = try await Subscriber.open(
                channel: channel, on: bus, options: .init(start: .oldest, waitForChannel: .seconds(120)))
            defer { subscriber.cancel() }
            var seen: [Seen] = []
            for try await event in subscriber {
                switch event {
                case .chunk(let chunk):
                    seen.append(Seen(sequence: chunk.sequence, key: chunk.key, bytes: chunk.bytes, attributes: chunk.attributes, expiry: chunk.expiry))
                case .gap(let missed, let after):
                    throw TestFailure("a gap of \(missed) after \(after)")
                case .publisherLeft: continue
                }
                if seen.count == count { break }
            }
            return seen
        }
    }

    @Test("chunks published on A arrive on B byte for byte, with their keys, sequences and attributes, in parts")
    func chunksCrossByteExact() async throws {
        let hosts = try await BridgedHosts(
            stream: "E2E", exports: ["cam/"], imports: ["cam/"], extra: ["--part-size", "64KiB", "--capacity", "16MiB"])
        defer { hosts.tearDown() }
        let channel = "cam/left.v1"
        let publisher = try await Publisher.open(channel: channel, on: hosts.a.bus.bus)
        let image = ChunkAttributes([
            "content-type": .string("image/x-raw"), "width": .integer(160), "height": .integer(120), "pixel-format": .string("AB24"),
            "org.example.exposure-us": .double(1250.5),
        ])
        var expected: [Seen] = []
        let chunks: [(key: String, bytes: [UInt8], attributes: ChunkAttributes)] = [
            ("frame", Self.payload(160 * 120 * 4, seed: 1), image),  // 76,800 bytes: two parts
            ("", Self.payload(10, seed: 2), ChunkAttributes()),  // no key: the token %
            ("a.b c*>/é", Self.payload((1 << 20) + 17, seed: 3), ChunkAttributes(["dtype": .string("uint8"), "shape": .integers([1 << 20 + 17])])),
            ("empty", [], ChunkAttributes()),  // one part without data
        ]
        // Published before the bridges start: the exporter begins with the oldest.
        for chunk in chunks {
            let published = try publisher.publish(chunk.bytes, key: chunk.key, attributes: chunk.attributes)
            expected.append(Seen(sequence: published.sequence, key: chunk.key, bytes: chunk.bytes, attributes: chunk.attributes, expiry: 0))
        }
        try await hosts.startExporter()
        try await hosts.startImporter()
        let seen: [Seen]
        do {
            seen = try await Self.read(expected.count, channel: channel, bus: hosts.b.bus.bus)
        } catch {
            Issue.record("\(error)\n\(hosts.logs)")
            throw error
        }
        #expect(seen.map(\.sequence) == expected.map(\.sequence))
        #expect(seen.map(\.key) == expected.map(\.key))
        #expect(seen.map(\.attributes) == expected.map(\.attributes))
        for (got, want) in zip(seen, expected) {
            #expect(got.bytes == want.bytes, "chunk \(want.sequence) (\(want.bytes.count) bytes)")
        }
        // The key's newest chunk is found on B by key, as on A.
        let latest = try await RegistryClient(connection: try await DBusConnection.connect(to: hosts.b.bus.bus))
            .latest(channel: channel, key: "frame")
        #expect(latest.bytes == chunks[0].bytes)
        // B's registry holds the channel because B's bridge publishes it there.
        #expect(hosts.importer?.logText.contains("publishing '\(channel)' on this host") == true, "\(hosts.logs)")
        await publisher.close()
    }

    @Test("a NATS node killed and restarted mid-stream, then B's bridge killed and restarted: nothing lost, nothing applied twice")
    func restarts() async throws {
        let hosts = try await BridgedHosts(
            stream: "RESTART", exports: ["sensor/a"], imports: ["sensor/a"],
            extra: ["--part-size", "64KiB", "--capacity", "32MiB", "--ack-wait", "5", "--import-from", "all"])
        defer { hosts.tearDown() }
        let channel = "sensor/a"
        let publisher = try await Publisher.open(channel: channel, on: hosts.a.bus.bus)
        var sent: [UInt64: [UInt8]] = [:]
        // 200 KB: four parts each, so kills land inside chunks too.
        func publish(_ range: ClosedRange<Int>) throws { try Self.publish(range, base: 200_000, on: publisher, into: &sent) }
        try await hosts.startExporter()
        try await hosts.startImporter()
        let total = 30
        let bus = hosts.b.bus.bus
        let reader = Task { try await Self.read(total, channel: channel, bus: bus) }

        try publish(1...10)
        hosts.cluster.nodes[0].kill()
        try publish(11...20)
        try await hosts.cluster.nodes[0].restart()
        // B's bridge is killed once it has applied some of the chunks, likely inside
        // one (which chunk and part the kill lands in is up to the machine).
        try await hosts.reportingLogs { try await waitUntil("B to import 15 chunks") {
            let connection = try await DBusConnection.connect(to: bus)
            defer { connection.close() }
            let segments = (try? await RegistryClient(connection: connection).segments(of: channel)) ?? []
            return segments.map(\.chunkCount).max() ?? 0 >= 15
        } }
        hosts.killImporter()
        try publish(21...total)
        try await hosts.startImporter()

        let seen: [Seen]
        do {
            seen = try await reader.value
        } catch {
            Issue.record("\(error)\n\(hosts.logs)")
            throw error
        }
        #expect(seen.map(\.sequence) == Array(1...UInt64(total)), "each chunk once, in order, none missing")
        for chunk in seen { #expect(chunk.bytes == sent[chunk.sequence], "chunk \(chunk.sequence)") }
        await publisher.close()
    }

    @Test("a host that joins late gets the newest chunk of each key (DeliverLastPerSubject), longer chunks' leftover parts ignored")
    func lateJoinerGetsLatestByKey() async throws {
        let hosts = try await BridgedHosts(stream: "LATE", exports: ["cfg"], imports: ["cfg"], extra: ["--part-size", "64KiB"])
        defer { hosts.tearDown() }
        let publisher = try await Publisher.open(channel: "cfg", on: hosts.a.bus.bus)
        let versions: [(key: String, bytes: [UInt8])] = [
            ("k1", Self.payload(100, seed: 1)), ("k2", Self.payload(150_000, seed: 2)),  // k2: three parts
            ("k1", Self.payload(200, seed: 3)), ("", Self.payload(50, seed: 4)),
            ("k2", Self.payload(70_000, seed: 5)),  // two parts: k2's part 3 subject keeps the older chunk's
            ("k1", Self.payload(300, seed: 6)),
        ]
        for version in versions { try publisher.publish(version.bytes, key: version.key) }
        try await hosts.startExporter()
        try await hosts.waitForStored(subject: "shmbus.LATE.k1.1.cfg", sequence: 6)
        try await hosts.startImporter()
        let seen: [Seen]
        do {
            seen = try await Self.read(3, channel: "cfg", bus: hosts.b.bus.bus)
        } catch {
            Issue.record("\(error)\n\(hosts.logs)")
            throw error
        }
        #expect(seen.map(\.sequence) == [4, 5, 6])
        #expect(seen.map(\.key) == ["", "k2", "k1"])
        #expect(seen.map(\.bytes) == [versions[3].bytes, versions[4].bytes, versions[5].bytes])
        let registry = RegistryClient(connection: try await DBusConnection.connect(to: hosts.b.bus.bus))
        #expect(try await registry.latest(channel: "cfg", key: "k2").bytes == versions[4].bytes)
        #expect(try await registry.latest(channel: "cfg", key: "k1").bytes == versions[5].bytes)
        await publisher.close()
    }

    /// A venv with nats-py from PyPI (pinned), made once in .build (`make test` makes it
    /// first: `make bridge-venv`).
    static func natsPython() async throws -> String {
        let venv = BuiltProducts.repositoryRoot.appendingPathComponent(".build/bridge-venv")
        let python = venv.appendingPathComponent("bin/python").path
        if !FileManager.default.fileExists(atPath: venv.appendingPathComponent("nats-py-installed").path) {
            for command in [["/usr/bin/python3", "-m", "venv", venv.path], [python, "-m", "pip", "install", "--quiet", "--retries", "10", "--timeout", "60", "nats-py==2.9.0"]] {
                let result = try await BuiltProducts.run(command[0], Array(command.dropFirst()))
                guard result.status == .exited(0) else { throw TestFailure("\(command.joined(separator: " ")): \(result.stderr)") }
            }
            _ = FileManager.default.createFile(atPath: venv.appendingPathComponent("nats-py-installed").path, contents: nil)
        }
        return python
    }

    struct PlainChunk: Decodable {
        var sequence: UInt64
        var key: String
        var parts: Int
        var payload: String
        var attributes: String?
    }

    @Test("a plain NATS client (nats-py, from BRIDGE.md alone) reads the bridged chunks on host B")
    func plainClientReadsTheLayout() async throws {
        let python = try await Self.natsPython()
        let hosts = try await BridgedHosts(stream: "PLAIN", exports: ["lab/scope.1"], imports: [], extra: ["--part-size", "64KiB"])
        defer { hosts.tearDown() }
        let publisher = try await Publisher.open(channel: "lab/scope.1", on: hosts.a.bus.bus)
        let trace = ChunkAttributes(["dtype": .string("float32"), "shape": .integers([2, 25_000])])
        let chunks: [(key: String, bytes: [UInt8], attributes: ChunkAttributes)] = [
            ("trace 1/a", Self.payload(200_000, seed: 9), trace), ("", Self.payload(3, seed: 8), ChunkAttributes()),
        ]
        var sequences: [UInt64] = []
        for chunk in chunks { sequences.append(try publisher.publish(chunk.bytes, key: chunk.key, attributes: chunk.attributes).sequence) }
        try await hosts.startExporter()
        try await hosts.waitForStored(subject: "shmbus.PLAIN.%.1.lab.scope%2E1", sequence: sequences[1])
        let script = BuiltProducts.repositoryRoot.appendingPathComponent("Tests/BridgeTests/PlainClient/plain_reader.py").path
        let arguments = ["netns", "exec", hosts.b.namespace, python, script, hosts.cluster.urls.joined(separator: ","), "PLAIN", "lab/scope.1", "2"]
        let result = try await withDeadline("the plain client") { try await BuiltProducts.run("ip", arguments) }
        guard result.status == .exited(0) else {
            Issue.record("plain_reader.py \(result.status): \(result.stderr)\n\(hosts.logs)")
            return
        }
        let read = try result.stdout.split(separator: "\n").map { try JSONDecoder().decode(PlainChunk.self, from: Data($0.utf8)) }
        #expect(read.map(\.sequence) == sequences)
        #expect(read.map(\.key) == chunks.map(\.key))
        #expect(read.map(\.parts) == [4, 1])
        #expect(read.map { Data(base64Encoded: $0.payload).map(Array.init) } == chunks.map(\.bytes))
        let block = try #require(read.first?.attributes.flatMap { Data(base64Encoded: $0) })
        #expect(try block.withUnsafeBytes { try ChunkAttributes(block: $0, payloadLength: 200_000) } == trace)
        #expect(read.last?.attributes == nil)
        await publisher.close()
    }

    /// 1,024 parts through three replicas: 22 s here, cluster start included, so it runs
    /// in the normal suite.
    @Test("a 1 GiB chunk crosses byte for byte, with the chunks around it")
    func gibibyteChunk() async throws {
        let size = 1 << 30
        let capacity = try #require(SegmentLayout.capacity(forOneChunkOf: UInt64(size) + (1 << 20), keyLength: 4))
        let hosts = try await BridgedHosts(
            stream: "GIB", exports: ["big"], imports: ["big"],
            extra: ["--capacity", "\(capacity)", "--ack-wait", "600", "--import-from", "all"])
        defer { hosts.tearDown() }
        var options = Publisher.Options()
        options.capacity = capacity
        let publisher = try await Publisher.open(channel: "big", on: hosts.a.bus.bus, options: options)
        // Written in place and checksummed on a thread of its own (seconds of work).
        let sums = try await onOwnThread { () throws -> [UInt64: UInt64] in
            var sums: [UInt64: UInt64] = [:]
            for (key, length) in [("head", 1000), ("blob", size), ("tail", 64)] {
                let next = publisher.lastSequence + 1
                var sum: UInt64 = 0
                let chunk = try publisher.publish(key: key, length: length) { buffer in
                    TestPayload.fill(buffer, sequence: next)
                    sum = shmbus_mix64(buffer.baseAddress, buffer.count, 0)
                }
                sums[chunk.sequence] = sum
            }
            return sums
        }
        try await hosts.startExporter()
        try await hosts.startImporter()
        let bus = hosts.b.bus.bus
        let seen = try await hosts.reportingLogs {
            try await withDeadline("the 1 GiB chunk on host B", .seconds(900)) { () throws -> [UInt64: UInt64] in
                let subscriber = try await Subscriber.open(channel: "big", on: bus, options: .init(start: .oldest, waitForChannel: .seconds(900)))
                defer { subscriber.cancel() }
                var seen: [UInt64: UInt64] = [:]
                for try await event in subscriber {
                    guard case .chunk(let chunk) = event else { throw TestFailure("\(event)") }
                    #expect(TestPayload.check(chunk), "chunk \(chunk.sequence)")
                    seen[chunk.sequence] = chunk.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, 0) }
                    if seen.count == 3 { break }
                }
                return seen
            }
        }
        #expect(seen == sums)
        await publisher.close()
    }
}
