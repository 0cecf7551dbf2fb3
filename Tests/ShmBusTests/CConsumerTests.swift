import CShmBusLinux
import Foundation
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// examples/c/shmbus-follow.c, a subscriber in plain C with GLib (no ShmBus code),
/// compiled here with `pkg-config gio-2.0` and run against a Swift publisher through
/// garbage collections (chunks with attributes among them, which it does not read), and
/// against a publisher that scribbles over its own segment.
@Suite(.serialized) struct CConsumerTests {
    /// Compiles the example once per test into a directory of its own.
    static func compile() async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-c-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = BuiltProducts.repositoryRoot.appendingPathComponent("examples/c/shmbus-follow.c").path
        let binary = directory.appendingPathComponent("shmbus-follow").path
        let (status, _, err) = try await BuiltProducts.run(
            "/bin/sh", ["-c", "cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter -o \"$1\" \"$2\" $(pkg-config --cflags --libs gio-2.0 gio-unix-2.0)", "cc", binary, source])
        try #require(status == .exited(0), "the example compiles without a warning: \(err)")
        return binary
    }

    static func attributes(_ sequence: UInt64, count: Int) -> ChunkAttributes {
        guard sequence % 3 != 0 else { return ChunkAttributes() }
        var attributes = ChunkAttributes(["content-type": .string("application/x-test" + String(repeating: "+x", count: Int(sequence % 40)))])
        attributes.array = .init(elementType: .uint8, shape: [count])
        return attributes
    }

    static func payload(_ sequence: UInt64) -> [UInt8] {
        let count = 1 + Int(sequence % 700)
        return (0..<count).map { UInt8(truncatingIfNeeded: Int(sequence) &* 131 &+ $0 &* 7) }
    }

    @Test(.timeLimit(.minutes(5))) func theCSubscriberFollowsASwiftPublisherThroughCollections() async throws {
        let binary = try await Self.compile()
        let fixture = try await RegistryFixture()
        var options = Publisher.Options()
        options.capacity = 64 << 10  // collected every hundred chunks or so
        let publisher = try await Publisher.open(channel: "c/follow", on: .address(fixture.address), options: options)
        var expected: [UInt64: UInt64] = [:]  // sequence -> mix64 of its payload
        let first = try publisher.publish(Self.payload(1), key: "first")
        expected[first.sequence] = Self.payload(1).withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, 0) }
        let total: UInt64 = 3_000
        let follower = try ChildProcess(
            binary, ["--address", fixture.address, "--from", "oldest", "--until", "\(first.sequence + total - 1)", "c/follow"],
            stdout: .pipe, stderr: .pipe)
        defer { follower.signal(SIGKILL) }
        let lines = Lock<[String]>([])
        let reading = Task { for try await line in follower.lines() { lines.withLock { $0.append(line) } } }
        let deadline = ContinuousClock.now + .seconds(60)
        while lines.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(lines.withLock { $0.first } == "chunk \(first.sequence) first \(Self.payload(1).count) \(String(format: "%016llx", expected[first.sequence]!))")
        // The rest in bursts, so that the reader sometimes falls behind a collection.
        for _ in 1..<total {
            let sequence = publisher.lastSequence + 1
            let bytes = Self.payload(sequence)
            expected[sequence] = bytes.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, 0) }
            // Two chunks in three carry attributes of varying size: the C reader, which
            // does not read them, follows payload_offset past them (FORMAT.md,
            // "Attributes").
            let published = try publisher.publish(bytes, attributes: Self.attributes(sequence, count: bytes.count))
            #expect(published.sequence == sequence)
            if sequence % 50 == 0 { try await Task.sleep(for: .milliseconds(2)) }
        }
        await publisher.flush()
        let status = await follower.exit()
        _ = try? await reading.value
        #expect(status == .exited(0))
        var accounted: UInt64 = 0
        var last: UInt64 = 0
        var gaps = 0
        for line in lines.withLock({ $0 }) {
            let fields = line.split(separator: " ")
            switch fields.first {
            case "chunk":
                let sequence = UInt64(fields[1]) ?? 0
                #expect(sequence > last, "in order: \(line)")
                #expect(fields[3] == "\(Self.payload(sequence).count)" && UInt64(fields[4], radix: 16) == expected[sequence], "byte for byte: \(line)")
                last = sequence
                accounted += 1
            case "gap":
                let missed = UInt64(fields[1]) ?? 0
                #expect(UInt64(fields[3]) == last, "a gap right after the last chunk: \(line)")
                last += missed
                accounted += missed
                gaps += 1
            default:
                Issue.record("unexpected line: \(line)")
            }
        }
        print("C subscriber: \(accounted) of \(total) sequences accounted for, \(gaps) gaps, \(publisher.currentSegment) after collections")
        #expect(accounted == total, "every sequence delivered or reported missing, exactly")
        await publisher.close()
    }

    /// A publisher writes random bytes and extreme words over its own live segment
    /// (the test peer's `scribble`, with a fixed seed): the C reader reads it again after
    /// each round and either reads it or says what is invalid; it never crashes.
    @Test(.timeLimit(.minutes(5))) func aScribbledSegmentIsRefusedNeverACrash() async throws {
        let binary = try await Self.compile()
        let fixture = try await RegistryFixture()
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["scribble", fixture.address, "c/scribble", "20261202"],
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
        defer { peer.signal(SIGKILL) }
        let ready = try await peer.readLine() ?? ""
        try #require(ready.hasPrefix("ready "), "\(ready)")
        var outcomes: [String: Int] = [:]
        for round in 0..<40 {
            if round > 0 {
                _ = try peer.standardInput?.writeAll(Array("go\n".utf8))
                #expect(try await peer.readLine() == "scribbled")
            }
            let (status, out, _) = try await BuiltProducts.run(binary, ["--address", fixture.address, "--from", "oldest", "--once", "c/scribble"])
            switch status {
            case .exited(0): outcomes["read", default: 0] += 1
            case .exited(2):
                #expect(out.split(separator: "\n").last?.hasPrefix("invalid: segment ") == true, "\(out)")
                outcomes["invalid", default: 0] += 1
            default:
                Issue.record("round \(round): \(status)\n\(out)")
            }
            // 64 chunks over 8 keys: the newest of each is live.
            if round == 0 { #expect(status == .exited(0) && out.split(separator: "\n").count == 8, "8 live chunks before any scribble: \(out)") }
        }
        print("C subscriber over a scribbled segment: \(outcomes)")
        #expect(outcomes["invalid", default: 0] > 0, "the scribbles were noticed")
    }
}
