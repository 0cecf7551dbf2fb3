import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting

/// One benchmark run: its private bus, its registry, and the workers it starts.
final class BenchRun {
    let shmbus: String
    let bus: PrivateBus
    let daemon: ChildProcess
    var address: String { bus.address }

    init(shmbus: String) async throws {
        self.shmbus = shmbus
        bus = try PrivateBus()
        daemon = try ChildProcess(shmbus, ["daemon", "--bus", bus.address, "--log-level", "error"], stdout: .null, stderr: .inherit)
        let connection = try await DBusConnection.connect(to: bus.bus)
        let deadline = ContinuousClock.now + .seconds(10)
        while try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil {
            guard ContinuousClock.now < deadline else { throw ShmBusError(.registryUnavailable, "the registry did not start") }
            try await Task.sleep(for: .milliseconds(20))
        }
        connection.close()
    }

    func stop() {
        daemon.signal(SIGTERM)
        daemon.waitUntilExit()
        bus.stop()
    }

    /// Starts a worker and waits for its "ready" line.
    func worker(_ role: String, _ arguments: [String] = []) async throws -> Worker {
        // SHMBUS_BENCH_PROFILE=ROLE runs that worker under `perf record` (cpu-clock),
        // writing perf-ROLE.data: how the figures in docs/BENCHMARKS.md were profiled.
        var command = [shmbus, "bench-worker", role, "--bus", address] + arguments
        if ProcessEnvironment.value("SHMBUS_BENCH_PROFILE") == role, let perf = PrivateBus.findExecutable("perf") {
            command = [perf, "record", "-q", "-e", "cpu-clock", "-F", "4000", "-g", "-o", "perf-\(role).data"] + command
        }
        let child = try ChildProcess(command[0], Array(command.dropFirst()), stdin: .pipe, stdout: .pipe, stderr: .inherit)
        let worker = Worker(child: child, role: role)
        let ready = try await worker.line()
        guard ready.hasPrefix("ready") else { throw ShmBusError(.bus, "bench worker \(role) failed to start: \(ready)") }
        worker.readyLine = ready
        return worker
    }

    // MARK: 1. Blob transfer

    func blob(size: UInt64, repetitions: Int) async throws -> BlobResult {
        let warmup = 1
        var result = BlobResult(size: size)
        // ShmBus: the publisher process holds the bytes; the subscriber process reads
        // every byte of its view.
        let channel = "bench/blob-\(size)"
        let slot = (size + UInt64(8192) + 4095) / 4096 * 4096
        let publisher = try await worker("blob-pub", ["--channel", channel, "--size", "\(size)", "--capacity", "\(slot * UInt64(2 * (repetitions + warmup)) + (4 << 20))"])
        var subscriber = try await worker("blob-sub", ["--channel", channel, "--count", "\(2 * (repetitions + warmup))"])
        // The bus path in place and from a copy, then the futex path in place (a
        // subscriber asleep on the doorbell), one subscriber at a time.
        for mode in ["in-place", "copy", "futex"] {
            if mode == "futex" {
                await subscriber.finish()
                subscriber = try await worker(
                    "blob-sub", ["--channel", channel, "--count", "\(repetitions + warmup)", "--wait", "futex"])
            }
            let (samples, preparing, errors) = try await transfers(
                publisher, subscriber, mode: mode == "futex" ? "in-place" : mode, count: repetitions, warmup: warmup)
            result.errors += errors
            if mode == "in-place" {
                result.shmbus = Samples(nanoseconds: samples, unit: "ms")
            } else if mode == "futex" {
                result.shmbusFutex = Samples(nanoseconds: samples, unit: "ms")
            } else {
                result.shmbusCopy = Samples(nanoseconds: samples, unit: "ms")
                result.shmbusCopyPrepare = Samples(nanoseconds: preparing, unit: "ms")
            }
        }
        try publisher.send("quit")
        await publisher.finish()
        await subscriber.finish()

        // The futex path again, with reused memory (`Publisher.Options.reuseMemory`):
        // four blobs to a segment, so the channel moves to a new generation every
        // fourth transfer, and after a warm-up of six rotations it cycles through
        // memory the subscriber has mapped (and filled page tables for) already.
        let reuseWarmup = 24
        let reuseChannel = channel + "-reuse"
        let reusing = try await worker(
            "blob-pub", ["--channel", reuseChannel, "--size", "\(size)", "--capacity", "\(slot * 4)", "--reuse"])
        let reader = try await worker(
            "blob-sub", ["--channel", reuseChannel, "--count", "\(repetitions + reuseWarmup)", "--wait", "futex"])
        let reused = try await transfers(reusing, reader, mode: "in-place", count: repetitions, warmup: reuseWarmup)
        result.shmbusReuse = Samples(nanoseconds: reused.samples, unit: "ms")
        result.errors += reused.errors
        try reusing.send("quit")
        await reusing.finish()
        await reader.finish()

        // D-Bus: the same bytes as the `ay` argument of a method call through the same daemon.
        if size <= UInt64(DBusLimits.maximumArrayLength) {
            let server = try await worker("ay-server")
            let destination = String(server.readyLine.split(separator: " ").last ?? "")
            let connection = try await DBusConnection.connect(to: bus.bus)
            let blob = [UInt8](repeating: 0x5A, count: Int(size))
            let expected = blob.withUnsafeBytes(benchChecksum)
            var ay: [UInt64] = []
            for rep in 0..<(repetitions + warmup) {
                let start = BenchClock.now()
                let reply = try await connection.call(
                    destination: destination, path: "/org/shmbus/Bench1", interface: "org.shmbus.Bench1", method: "Put",
                    [.bytes(blob)], timeout: .seconds(120))
                let (done, checksum) = try reply.decode(UInt64.self, UInt64.self)
                if checksum != expected { result.errors += 1 }
                if rep >= warmup { ay.append(done - start) }
            }
            connection.close()
            try server.send("quit")
            await server.finish()
            result.dbus = Samples(nanoseconds: ay, unit: "ms")
        }

        // memcpy: one copy into memory already mapped, then read every byte; and into
        // fresh memory (what a receiver allocating its own buffer pays).
        let source = [UInt8](repeating: 0xA5, count: Int(size))
        var warm = [UInt8](repeating: 0, count: Int(size))
        var copies: [UInt64] = []
        var fresh: [UInt64] = []
        for rep in 0..<(repetitions + warmup) {
            let start = BenchClock.now()
            warm.withUnsafeMutableBytes { dst in source.withUnsafeBytes { dst.copyMemory(from: $0) } }
            let sum = warm.withUnsafeBytes(benchChecksum)
            let done = BenchClock.now()
            let freshStart = BenchClock.now()
            let region = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if let region, region != MAP_FAILED {
                source.withUnsafeBytes { region.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                let freshSum = benchChecksum(UnsafeRawBufferPointer(start: region, count: Int(size)))
                let freshDone = BenchClock.now()
                munmap(region, Int(size))
                if freshSum != sum { result.errors += 1 }
                if rep >= warmup { fresh.append(freshDone - freshStart) }
            }
            if rep >= warmup { copies.append(done - start) }
        }
        result.memcpy = Samples(nanoseconds: copies, unit: "ms")
        result.memcpyFresh = Samples(nanoseconds: fresh, unit: "ms")
        return result
    }

    /// `count` transfers after `warmup` more, each once the one before has arrived:
    /// the time from the publisher having the bytes to the subscriber having read
    /// them all, the time the publisher spent preparing memory before each, and how
    /// many arrived wrong.
    func transfers(
        _ publisher: Worker, _ subscriber: Worker, mode: String, count: Int, warmup: Int
    ) async throws -> (samples: [UInt64], preparing: [UInt64], errors: Int) {
        var samples: [UInt64] = []
        var preparing: [UInt64] = []
        var errors = 0
        for rep in 0..<(count + warmup) {
            try publisher.send("go \(mode)")
            // The subscriber's line first: this process stays asleep (off the two
            // cores) until the transfer is over; the publisher's line waits in its pipe.
            let got = try await subscriber.line().split(separator: " ")
            let sent = try await publisher.line().split(separator: " ")
            guard sent.count == 5, got.count == 4, let start = UInt64(sent[2]), let done = UInt64(got[2]),
                let prepared = UInt64(sent[4])
            else {
                throw ShmBusError(.bus, "unexpected worker output: \(sent) / \(got)")
            }
            if sent[1] != got[1] || sent[3] != got[3] { errors += 1 }
            if rep >= warmup {
                samples.append(done - start)
                preparing.append(prepared)
            }
        }
        return (samples, preparing, errors)
    }

    // MARK: 3. Small-chunk throughput

    /// `rounds` floods one after the other; the result is the median round (by chunks
    /// published per second), with every round's rate beside it and whether every round
    /// delivered everything. One flood is a few seconds, and on a shared host a few
    /// seconds can be anyone's: the median of several says more than any one.
    func flood(subscribers: Int, seconds: Double, rounds: Int, batch: Int = 0) async throws -> ThroughputResult {
        var all: [ThroughputResult] = []
        for round in 0..<rounds {
            all.append(
                try await floodRound(
                    subscribers: subscribers, seconds: seconds, batch: batch, channel: "bench/flood-\(subscribers)-\(batch)-\(round)"))
        }
        var median = all.sorted { $0.publishedPerSecond < $1.publishedPerSecond }[all.count / 2]
        median.publishedPerSecondByRound = all.map(\.publishedPerSecond)
        median.everyRoundComplete = all.allSatisfy(\.isComplete)
        return median
    }

    private func floodRound(subscribers: Int, seconds: Double, batch: Int, channel: String) async throws -> ThroughputResult {
        let publisher = try await worker(
            "flood-pub", ["--channel", channel, "--size", "64", "--seconds", "\(seconds)", "--capacity", "\(512 << 20)", "--batch", "\(batch)"])
        var readers: [Worker] = []
        for _ in 0..<subscribers { readers.append(try await worker("flood-sub", ["--channel", channel])) }
        try publisher.send("go")
        // published N START END SIGNALS LAST
        let fields = try await publisher.line().split(separator: " ")
        guard fields.count == 6, let published = UInt64(fields[1]), let start = UInt64(fields[2]), let end = UInt64(fields[3]),
            let signals = UInt64(fields[4]), let last = UInt64(fields[5])
        else { throw ShmBusError(.bus, "unexpected flood output \(fields)") }
        let window = Double(end - start) / 1e9
        var result = ThroughputResult(
            subscribers: subscribers, chunkSize: 64, batch: batch, seconds: window, published: published,
            publishedPerSecond: Double(published) / window, signals: signals, signalsPerSecond: Double(signals) / window)
        for reader in readers { try reader.send("stop \(last)") }
        for reader in readers {
            // received N missed M ordered B done T signals S
            let f = try await reader.line().split(separator: " ")
            let received = UInt64(f[safe: 1]) ?? 0
            let done = UInt64(f[safe: 7]) ?? end
            let lag = done > end ? Double(done - end) / 1e6 : 0
            result.subscriberResults.append(.init(
                received: received, missed: UInt64(f[safe: 3]) ?? 0, inOrder: f[safe: 5] == "true",
                receivedPerSecond: Double(received) / (Double(max(done, end) - start) / 1e9), lagMilliseconds: lag,
                signalsReceived: UInt64(f[safe: 9]) ?? 0))
            await reader.finish()
        }
        try publisher.send("quit")
        await publisher.finish()
        return result
    }

    // MARK: 4. Views

    func views(bigSize: Int, repetitions: Int) async throws -> ViewResult {
        var options = Publisher.Options()
        options.capacity = UInt64(bigSize + (8 << 20))
        let publisher = try await Publisher.open(channel: "bench/views", on: bus.bus, options: options)
        try publisher.publish([UInt8](repeating: 3, count: 4096), key: "small")
        try publisher.publish(key: "big", length: Int(bigSize)) { $0.initializeMemory(as: UInt8.self, repeating: 4) }
        await publisher.flush()
        let probe = try ChildProcess(
            shmbus, ["bench-worker", "view-probe", "--bus", address, "--channel", "bench/views", "--count", "\(repetitions)"],
            stdout: .pipe, stderr: .inherit)
        let output = String(decoding: try await probe.collectOutput().stdout, as: UTF8.self)
        _ = await probe.exit()
        await publisher.close()
        // views SMALL_P50 SMALL_P99 BIG_P50 BIG_P99 growth BYTES touched X
        let f = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard f.count >= 7, let smallP50 = Double(f[1]), let smallP99 = Double(f[2]), let bigP50 = Double(f[3]),
            let bigP99 = Double(f[4]), let growth = UInt64(f[6])
        else { throw ShmBusError(.bus, "unexpected view probe output: \(output)") }
        return ViewResult(
            smallSize: 4096, bigSize: UInt64(bigSize), smallP50Microseconds: smallP50, smallP99Microseconds: smallP99,
            bigP50Microseconds: bigP50, bigP99Microseconds: bigP99, privateMemoryGrowthBytes: growth)
    }
}

/// A worker process and its stdout, read line by line.
final class Worker {
    let child: ChildProcess
    let role: String
    var readyLine = ""

    init(child: ChildProcess, role: String) {
        self.child = child
        self.role = role
    }

    func send(_ line: String) throws {
        _ = try child.standardInput?.writeAll(Array((line + "\n").utf8))
    }

    func line() async throws -> String {
        guard let line = try await child.readLine() else {
            throw ShmBusError(.bus, "bench worker \(role) ended early (\(await child.exit()))")
        }
        return line
    }

    func finish() async {
        child.closeStandardInput()
        _ = await child.exit()
    }
}

extension Array where Element == Substring {
    subscript(safe index: Int) -> String {
        index < count ? String(self[index]) : ""
    }
}
