import ArgumentParser
import CShmBusLinux
import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import ShmBusTesting

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "See ShmBus move camera-style frames and a blob D-Bus cannot carry, between two processes.",
        discussion: """
            Uses the session bus, or starts a private dbus-daemon when none is reachable; starts the \
            registry daemon unless one runs; publishes frames and one large blob from this process to \
            a `shmbus subscribe` process, which reads every byte; prints what moved and how fast.
            """)

    @Option(help: "Frames to send.")
    var frames = 240

    @Option(help: "Bytes per frame (default: 640x480 RGBA).")
    var frameSize = ByteCount(640 * 480 * 4)

    @Option(help: "Size of the blob (D-Bus carries at most 64 MiB per array).")
    var blobSize = ByteCount(256 << 20)

    @OptionGroup var bus: BusOption

    /// A negative --frames used to trap on an inverted range; 0 of anything shows nothing.
    func validate() throws {
        if frames < 1 { throw ValidationError("--frames must be 1 or more (got \(frames))") }
        if frameSize.bytes == 0 { throw ValidationError("--frame-size must be more than 0") }
        if blobSize.bytes == 0 { throw ValidationError("--blob-size must be more than 0") }
    }

    func run() async throws {
        try await reportingFailures {
            let shmbus = InstallService.currentExecutable()
            var cleanup: [() -> Void] = []
            defer { for step in cleanup.reversed() { step() } }

            // 1. A bus.
            let address: String
            if let requested = bus.bus {
                address = DBusConnection.Bus(parsing: requested) == .session ? try Self.sessionAddress() : requested
            } else if let session = try? await DBusConnection.connect(to: .session) {
                session.close()
                address = try Self.sessionAddress()
                Output.line("bus       the session bus")
            } else {
                let privateBus = try PrivateBus()
                cleanup.append { privateBus.stop() }
                address = privateBus.address
                Output.line("bus       no session bus reachable: started a private dbus-daemon")
            }
            let connection = try await DBusConnection.connect(to: .address(address))
            defer { connection.close() }

            // 2. The registry.
            if try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil {
                let daemon = try ChildProcess(shmbus, ["daemon", "--bus", address, "--log-level", "warning"], stdout: .null, stderr: .inherit)
                cleanup.append {
                    daemon.signal(SIGTERM)
                    daemon.waitUntilExit()
                }
                let deadline = ContinuousClock.now + .seconds(10)
                while try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil {
                    guard ContinuousClock.now < deadline else { throw ShmBusError(.registryUnavailable, "the registry daemon did not start") }
                    try await Task.sleep(for: .milliseconds(20))
                }
                Output.line("registry  started `shmbus daemon` (pid \(daemon.pid))")
            } else {
                Output.line("registry  already running")
            }

            // 3. The publisher (this process) and the subscriber (another process).
            let channel = "demo/\(getpid())"
            var options = Publisher.Options()
            let frameBytes = frameSize.bytes
            let total = UInt64(frames) * (frameBytes + 4096) + blobSize.bytes + (8 << 20)
            options.capacity = (total + 4095) / 4096 * 4096
            let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
            let subscriber = try ChildProcess(
                shmbus,
                ["subscribe", "--bus", address, "--channel", channel, "--from", "oldest", "--count", "\(frames + 1)", "--json", "--checksum"],
                stdout: .pipe, stderr: .inherit)
            cleanup.append { subscriber.signal(SIGTERM) }
            async let lines = subscriber.collectOutput()
            Output.line("publisher this process (pid \(getpid())), channel \(channel)")
            Output.line("subscriber `shmbus subscribe` (pid \(subscriber.pid)), reading every byte")
            Output.line("")

            // Frames: a moving gradient, written in place into shared memory, 120 per second.
            var expected: [UInt64: UInt64] = [:]
            let started = ContinuousClock.now
            for index in 0..<frames {
                var sum: UInt64 = 0
                let published = try publisher.publish(length: Int(frameBytes)) { buffer in
                    Self.drawFrame(index, into: buffer)
                    sum = shmbus_mix64(buffer.baseAddress, buffer.count, 0)
                }
                expected[published.sequence] = sum
                try await Task.sleep(until: started + .milliseconds(Int64(index + 1) * 1000 / 120))
            }
            let framesTime = ContinuousClock.now - started

            // The blob: bytes this process already holds, published with one copy.
            var blob = [UInt8](repeating: 0, count: Int(blobSize.bytes))
            blob.withUnsafeMutableBytes { buffer in
                var state: UInt64 = 0x5DEECE66D
                for i in buffer.bindMemory(to: UInt64.self).indices {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    buffer.bindMemory(to: UInt64.self)[i] = state
                }
            }
            let blobChecksum = blob.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, 0) }
            let blobStart = ContinuousClock.now
            let published = try publisher.publish(blob, key: "blob")
            let blobPublish = ContinuousClock.now - blobStart
            expected[published.sequence] = blobChecksum
            await publisher.flush()

            let output = String(decoding: try await lines.stdout, as: UTF8.self)
            let status = await subscriber.exit()
            let report = try Self.report(output: output, expected: expected, frames: frames, frameBytes: frameBytes, blobBytes: blobSize.bytes,
                framesTime: framesTime, blobPublish: blobPublish, signals: publisher.signalsSent)
            Output.line(report)
            await publisher.close()
            guard status == .exited(0), !report.contains("MISMATCH") else {
                throw ShmBusError(.badSegment, "the subscriber did not receive everything intact (\(status))")
            }
        }
    }

    /// A diagonal gradient that moves with the frame number.
    static func drawFrame(_ index: Int, into buffer: UnsafeMutableRawBufferPointer) {
        let words = buffer.bindMemory(to: UInt32.self)
        let shift = UInt32(truncatingIfNeeded: index &* 4)
        for i in words.indices {
            let v = UInt32(truncatingIfNeeded: i) &+ shift
            words[i] = (v & 0xFF) | ((v >> 1 & 0xFF) << 8) | ((v >> 2 & 0xFF) << 16) | 0xFF00_0000
        }
    }

    struct Line: Decodable {
        var event: String
        var sequence: UInt64?
        var length: Int?
        var latencyMicroseconds: Double?
        var checksum: String?
    }

    /// The table of what moved and how fast, from the subscriber's lines.
    static func report(
        output: String, expected: [UInt64: UInt64], frames: Int, frameBytes: UInt64, blobBytes: UInt64,
        framesTime: Duration, blobPublish: Duration, signals: UInt64
    ) throws -> String {
        let decoder = JSONDecoder()
        let lines = output.split(separator: "\n").compactMap { try? decoder.decode(Line.self, from: Data($0.utf8)) }
        let chunks = lines.filter { $0.event == "chunk" }
        let intact = chunks.filter { line in
            guard let sequence = line.sequence, let sum = line.checksum else { return false }
            return expected[sequence].map { String($0, radix: 16) } == sum
        }
        let frameLines = chunks.filter { UInt64($0.length ?? 0) == frameBytes }
        let blobLine = chunks.first { UInt64($0.length ?? 0) == blobBytes }
        let latencies = frameLines.compactMap(\.latencyMicroseconds).sorted()
        func percentile(_ p: Double) -> String {
            guard !latencies.isEmpty else { return "-" }
            let value = latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
            return value < 1000 ? String(format: "%.0f µs", value) : String(format: "%.2f ms", value / 1000)
        }
        func seconds(_ d: Duration) -> Double { d.inSeconds }
        var table = TextTable("WHAT", "COUNT", "BYTES", "TIME", "RATE", "LATENCY p50 / p99", "INTACT")
        table.add(
            "frames", "\(frameLines.count)/\(frames)", ByteCount.human(UInt64(frameLines.count) * frameBytes),
            String(format: "%.2f s", seconds(framesTime)), String(format: "%.0f fps", Double(frameLines.count) / seconds(framesTime)),
            "\(percentile(0.5)) / \(percentile(0.99))", intact.count >= frameLines.count ? "yes" : "MISMATCH")
        let blobLatency = blobLine?.latencyMicroseconds.map { String(format: "%.1f ms", $0 / 1000) } ?? "-"
        let blobIntact = blobLine.map { line in intact.contains { $0.sequence == line.sequence } } ?? false
        table.add(
            "blob", blobLine == nil ? "0/1" : "1/1", ByteCount.human(blobBytes),
            String(format: "%.1f ms", seconds(blobPublish) * 1000),
            ByteCount.human(UInt64(Double(blobBytes) / max(seconds(blobPublish), 1e-9))) + "/s", blobLatency,
            blobIntact ? "yes" : "MISMATCH")
        var out = table.rendered
        out += "\n\nLatency: from the publisher reserving the chunk to the subscriber having read every byte."
        out += "\nBus signals: \(signals) Committed notifications for \(frames + 1) chunks; no payload crossed the bus."
        if blobBytes > 64 << 20 {
            out += "\nD-Bus itself cannot carry the blob: arrays are limited to 64 MiB, messages to 128 MiB."
        }
        return out
    }

    static func sessionAddress() throws -> String {
        if let address = ProcessEnvironment.value("DBUS_SESSION_BUS_ADDRESS") { return address }
        if let runtime = ProcessEnvironment.value("XDG_RUNTIME_DIR"), access("\(runtime)/bus", F_OK) == 0 { return "unix:path=\(runtime)/bus" }
        throw ShmBusError(.bus, "cannot tell the session bus's address; pass --bus ADDRESS")
    }
}
