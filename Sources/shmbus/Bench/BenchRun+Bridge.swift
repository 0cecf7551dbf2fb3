import Foundation
import Glibc
import NATS
import ShmBus
import ShmBusSystem

/// Part "bridge" (issue 18, docs/BRIDGE.md): chunks published on this run's bus, carried
/// by a `shmbus bridge --export` process into a JetStream stream, against the same bytes
/// published straight to JetStream through NATS.c (the bridge's own client), on one
/// three-node cluster with replicas 3, in the same run.
struct BridgeResult: Encodable, Sendable {
    var chunkSize: Int
    var chunks: Int
    /// Messages per chunk (parts of at most `partSize` bytes).
    var parts: Int
    var partSize: Int
    /// Seconds per round, from the first publish until the stream had stored every message.
    var bridgeSeconds: [Double] = []
    var rawSeconds: [Double] = []
    /// Every round's stream held every message it should.
    var complete = true

    var bridge: Double { Self.median(bridgeSeconds) }
    var raw: Double { Self.median(rawSeconds) }
    var bridgeOverRaw: Double { bridge / raw }
    var bridgeMiBps: Double { Double(chunkSize * chunks) / bridge / Double(1 << 20) }
    var rawMiBps: Double { Double(chunkSize * chunks) / raw / Double(1 << 20) }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }
}

extension BenchRun {
    /// Each round publishes `chunks` chunks of `size` bytes both ways, the raw way first
    /// in odd rounds and second in even ones; every message is stored (acknowledged by
    /// a quorum of the three nodes) before the clock stops.
    func bridge(cluster: BenchCluster, size: Int, chunks: Int, rounds: Int, index: Int) async throws -> BridgeResult {
        let partSize = 1 << 20
        var result = BridgeResult(chunkSize: size, chunks: chunks, parts: max(1, (size + partSize - 1) / partSize), partSize: partSize)
        let nats = try await connect(cluster)
        defer { nats.close() }
        let payload = [UInt8]((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        for round in 0..<rounds {
            for way in round % 2 == 0 ? ["raw", "bridge"] : ["bridge", "raw"] {
                let stream = "BENCH\(way.uppercased())\(index)R\(round)"
                if way == "raw" {
                    let (seconds, stored) = try raw(nats, stream: stream, payload: payload, chunks: chunks, parts: result.parts, partSize: partSize)
                    result.rawSeconds.append(seconds)
                    result.complete = result.complete && stored
                } else {
                    let (seconds, stored) = try await bridged(
                        nats, cluster: cluster, stream: stream, payload: payload, chunks: chunks, parts: result.parts)
                    result.bridgeSeconds.append(seconds)
                    result.complete = result.complete && stored
                }
                try? nats.deleteStream(stream)
            }
        }
        return result
    }

    private func connect(_ cluster: BenchCluster) async throws -> NATSConnection {
        // The nodes take a moment to elect a JetStream leader.
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                let nats = try NATSConnection(options: .init(servers: cluster.urls))
                var probe = StreamConfiguration(name: "BENCHPROBE", subjects: ["benchprobe"])
                probe.replicas = 3
                try nats.addOrUpdateStream(probe)
                try nats.deleteStream("BENCHPROBE")
                return nats
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Publishes every part with `js_PublishMsg`, one at a time, each with a
    /// `Nats-Msg-Id` as the bridge sends, and waits for each acknowledgement.
    private func raw(
        _ nats: NATSConnection, stream: String, payload: [UInt8], chunks: Int, parts: Int, partSize: Int
    ) throws -> (Double, Bool) {
        var configuration = StreamConfiguration(name: stream, subjects: ["\(stream.lowercased()).>"])
        configuration.replicas = 3
        try nats.addOrUpdateStream(configuration)
        let start = ContinuousClock.now
        try payload.withUnsafeBytes { bytes in
            for chunk in 0..<chunks {
                for part in 0..<parts {
                    let data = UnsafeRawBufferPointer(rebasing: bytes[(part * partSize)..<min(bytes.count, (part + 1) * partSize)])
                    _ = try nats.publish(
                        subject: "\(stream.lowercased()).c.\(part + 1)", headers: [], data: data, messageID: "\(chunk).\(part)")
                }
            }
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        return (seconds, try nats.streamInfo(stream).messages == UInt64(chunks * parts))
    }

    /// Starts a bridge exporting one channel into `stream`, lets one chunk through
    /// first (the bridge connected, the stream made, the export subscribed), then
    /// publishes `chunks` chunks and stops the clock when the stream holds all of them.
    private func bridged(
        _ nats: NATSConnection, cluster: BenchCluster, stream: String, payload: [UInt8], chunks: Int, parts: Int
    ) async throws -> (Double, Bool) {
        let channel = "bench/bridge-\(stream.lowercased())"
        var options = Publisher.Options()
        options.capacity = UInt64(chunks + 1) * UInt64(payload.count + 4096) + (16 << 20)
        let publisher = try await Publisher.open(channel: channel, on: bus.bus, options: options)
        let bridge = try ChildProcess(
            shmbus,
            ["bridge", "--bus", address, "--stream", stream, "--name", "bench", "--replicas", "3", "--export", channel,
                "--part-size", "1MiB", "--log-level", "error"] + cluster.urls.flatMap { ["--server", $0] },
            stdout: .null, stderr: .inherit)
        defer {
            bridge.signal(SIGTERM)
            _ = bridge.waitUntilExit()
        }
        _ = try publisher.publish(payload)
        try await waitForMessages(nats, stream: stream, count: UInt64(parts), timeout: .seconds(60))
        let start = ContinuousClock.now
        for _ in 0..<chunks { _ = try publisher.publish(payload) }
        let stored = try await waitForMessages(nats, stream: stream, count: UInt64((chunks + 1) * parts), timeout: .seconds(600))
        let seconds = (ContinuousClock.now - start).inSeconds
        await publisher.close()
        return (seconds, stored)
    }

    /// Polls the stream's message count every 10 ms until it reaches `count`: each poll
    /// is a JetStream API request the cluster answers while the bridge publishes, so
    /// more often would load the side being measured (10 ms is under 1% of a round).
    @discardableResult
    private func waitForMessages(_ nats: NATSConnection, stream: String, count: UInt64, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let held = try? nats.streamInfo(stream).messages, held >= count { return held == count }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ShmBusError(.bus, "the bridge did not store \(count) messages in stream \(stream) within \(timeout)")
    }
}

extension BenchResults {
    var bridgeTable: String {
        var lines = [
            "bridge to JetStream (three nats-server nodes on loopback, replicas 3; median of rounds; parts of at most 1 MiB)",
            "chunk      chunks  parts  bridge MiB/s  chunks/s   raw MiB/s  chunks/s   bridge/raw time  complete",
        ]
        for r in bridge {
            let size = r.chunkSize >= 1 << 20 ? "\(r.chunkSize >> 20) MiB" : "\(r.chunkSize) B"
            lines.append(
                size.padding(toLength: 11, withPad: " ", startingAt: 0) + "\(r.chunks)".padding(toLength: 8, withPad: " ", startingAt: 0)
                    + "\(r.parts)".padding(toLength: 7, withPad: " ", startingAt: 0)
                    + f(r.bridgeMiBps, 1).padding(toLength: 14, withPad: " ", startingAt: 0)
                    + f(Double(r.chunks) / r.bridge, 0).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + f(r.rawMiBps, 1).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + f(Double(r.chunks) / r.raw, 0).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + (f(r.bridgeOverRaw, 2) + "x").padding(toLength: 17, withPad: " ", startingAt: 0) + (r.complete ? "yes" : "NO"))
        }
        return lines.joined(separator: "\n")
    }
}
