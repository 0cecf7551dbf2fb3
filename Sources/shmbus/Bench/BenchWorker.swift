import ArgumentParser
import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus

/// The processes a benchmark run starts: each role is one side of one measurement.
/// They talk to `shmbus bench` with lines on stdin and stdout.
struct BenchWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-worker", abstract: "A process of `shmbus bench` (not for direct use).", shouldDisplay: false)

    @Argument var role: String
    @Option var bus: String
    @Option var channel = "bench"
    @Option var capacity: UInt64 = 64 << 20
    @Option var count = 0
    @Option var size = 4096
    @Option var rate = 0
    @Option var seconds = 0.0
    @Option var wait = "bus"
    @Option var dest = ""
    /// flood-pub: chunks per `publishBatch` (0: one `publish` per chunk).
    @Option var batch = 0
    /// blob-pub: `Publisher.Options.reuseMemory`.
    @Flag var reuse = false

    func run() async throws {
        let address = DBusConnection.Bus.address(bus)
        switch role {
        case "blob-pub": try await blobPublisher(address)
        case "blob-sub": try await blobSubscriber(address)
        case "ay-server": try await byteArrayServer(address)
        case "blob-server": try await blobServer(address)
        case "paced-pub": try await pacedPublisher(address)
        case "latency-sub": try await latencySubscriber(address)
        case "signal-send": try await signalSender(address)
        case "signal-recv": try await signalReceiver(address)
        case "flood-pub": try await floodPublisher(address)
        case "flood-sub": try await floodSubscriber(address)
        case "view-probe": try await viewProbe(address)
        case "futex-recv": try await bareFutexReceiver()
        case "futex-send": try await bareFutexSender()
        case "request-server": try await requestServer(address)
        case "request-client": try await requestClient(address)
        case "spin-recv": try await bareSpinReceiver()
        case "spin-send": try await bareSpinSender()
        default: throw ValidationError("unknown role \(role)")
        }
    }

    /// Publishes a blob of `size` bytes (already in this process's memory) for each
    /// "go" line; prints the time it started and the blob's checksum.
    func blobPublisher(_ bus: DBusConnection.Bus) async throws {
        var options = Publisher.Options()
        options.capacity = capacity
        options.garbageCollection = .whenFull
        // For comparisons only: the prefaulter's window (0 turns it off).
        if let bytes = ProcessEnvironment.value("SHMBUS_BENCH_PREFAULT_BYTES").flatMap(UInt64.init) { options.prefaultBytes = bytes }
        options.reuseMemory = reuse
        let publisher = try await Publisher.open(channel: channel, on: bus, options: options)
        var blob = [UInt8](repeating: 0, count: size)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        blob.withUnsafeMutableBytes { buffer in
            let words = buffer.bindMemory(to: UInt64.self)
            for i in words.indices {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                words[i] = state
            }
        }
        let checksum = blob.withUnsafeBytes(benchChecksum)
        Output.line("ready")
        while let line = readLine(), line.hasPrefix("go") {
            var start: UInt64 = 0
            var prepared: UInt64 = 0
            let chunk: PublishedChunk
            if line == "go in-place" {
                // Zero copy: the bytes are produced in shared memory (here, copied in
                // before the clock starts, as a renderer or a read(2) would write them);
                // the clock starts when the publisher has them, before the commit.
                chunk = try publisher.publish(key: "blob", length: blob.count) { buffer in
                    blob.withUnsafeBytes { buffer.copyMemory(from: $0) }
                    start = BenchClock.now()
                }
            } else {
                // From private memory: the publish copies the bytes into the segment.
                // First the publisher gets that memory ready, off the clock, as a
                // publisher does between frames (`Publisher.prepare`); how long that
                // took is reported beside the figure.
                let before = BenchClock.now()
                await publisher.prepare(forChunksOf: blob.count, key: "blob")
                prepared = BenchClock.now() - before
                start = BenchClock.now()
                chunk = try publisher.publish(blob, key: "blob")
            }
            Output.line("sent \(chunk.sequence) \(start) \(String(checksum, radix: 16)) \(prepared)")
        }
        await publisher.close()
    }

    /// Receives blobs, reads every byte (checksum), prints when it was done.
    func blobSubscriber(_ bus: DBusConnection.Bus) async throws {
        // `--wait futex`: asleep on the publisher's doorbell instead of listening to the bus.
        let subscriber = try await Subscriber.open(channel: channel, on: bus, options: .init(start: .now, wait: wait == "futex" ? .futex : .bus))
        Output.line("ready")
        var received = 0
        for try await chunk in subscriber.chunks {
            chunk.prefetch()
            let checksum = chunk.withUnsafeBytes(benchChecksum)
            let done = BenchClock.now()
            Output.line("got \(chunk.sequence) \(done) \(String(checksum, radix: 16))")
            received += 1
            if received == count { break }
        }
        subscriber.cancel()
    }

    /// Exports `Put(ay) -> (t done, t checksum)`, the D-Bus way to move the same bytes,
    /// and `Echo(ay) -> ay`, the D-Bus way to answer a request.
    func byteArrayServer(_ bus: DBusConnection.Bus) async throws {
        let connection = try await DBusConnection.connect(to: bus)
        let interface = DBusInterface("org.shmbus.Bench1") {
            DBusMethod("Put", inputs: [.init("data", "ay")], outputs: [.init("done", "t"), .init("checksum", "t")]) { call in
                guard case .bytes(let bytes)? = call.arguments.first else { throw DBusError.invalidArgument("no bytes") }
                let checksum = bytes.withUnsafeBytes(benchChecksum)
                return [.uint64(BenchClock.now()), .uint64(checksum)]
            }
            DBusMethod("Echo", inputs: [.init("data", "ay")], outputs: [.init("same", "ay")]) { call in
                guard case .bytes(let bytes)? = call.arguments.first else { throw DBusError.invalidArgument("no bytes") }
                return [.bytes(bytes)]
            }
        }
        let export = try await connection.export([interface], at: "/org/shmbus/Bench1")
        Output.line("ready \(connection.uniqueName)")
        while let line = readLine(), line != "quit" {}
        withExtendedLifetime(export) {}
    }

    /// Publishes `count` chunks of `size` bytes at `rate` per second.
    func pacedPublisher(_ bus: DBusConnection.Bus) async throws {
        var options = Publisher.Options()
        if let interval = ProcessEnvironment.value("SHMBUS_BENCH_SIGNAL_INTERVAL_MS").flatMap(Int.init) {
            options.minimumSignalInterval = .milliseconds(interval)
        }
        let publisher = try await Publisher.open(channel: channel, on: bus, options: options)
        Output.line("ready")
        _ = readLine()
        let payload = [UInt8](repeating: 7, count: size)
        let start = ContinuousClock.now
        for i in 0..<count {
            try publisher.publish(payload)
            try await Task.sleep(until: start + .nanoseconds(Int64(i + 1) * 1_000_000_000 / Int64(rate)))
        }
        Output.line("done \(publisher.signalsSent)")
        _ = readLine()
        await publisher.close()
    }

    /// Runs `body` on a new thread (for blocking work) and returns its result.
    func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.start()
        }
    }

    /// Emits `count` bare signals (no ShmBus) carrying their send time.
    func signalSender(_ bus: DBusConnection.Bus) async throws {
        let connection = try await DBusConnection.connect(to: bus)
        Output.line("ready")
        _ = readLine()
        let start = ContinuousClock.now
        for i in 0..<count {
            try connection.emit(path: "/org/shmbus/Bench1", interface: "org.shmbus.Bench1", member: "Tick", [.uint64(RealtimeClock.now())])
            try await Task.sleep(until: start + .nanoseconds(Int64(i + 1) * 1_000_000_000 / Int64(rate)))
        }
        Output.line("done")
        _ = readLine()
    }

    /// Records, for each bare signal, the time from its emission to its arrival; prints
    /// the nanoseconds as a JSON array.
    func signalReceiver(_ bus: DBusConnection.Bus) async throws {
        let connection = try await DBusConnection.connect(to: bus)
        let stream = try await connection.signals(matching: MatchRule(interface: "org.shmbus.Bench1", member: "Tick"))
        Output.line("ready")
        var latencies: [UInt64] = []
        for try await message in stream {
            guard case .uint64(let sent)? = message.body.first else { continue }
            latencies.append(RealtimeClock.now() &- sent)
            if latencies.count == count { break }
        }
        try JSONOutput.print(latencies)
    }

    /// Publishes `size`-byte chunks as fast as it can for `seconds`.
    func floodPublisher(_ bus: DBusConnection.Bus) async throws {
        var options = Publisher.Options()
        options.capacity = capacity
        let publisher = try await Publisher.open(channel: channel, on: bus, options: options)
        Output.line("ready")
        _ = readLine()
        let payload = [UInt8](repeating: 1, count: size)
        let start = BenchClock.now()
        let end = start + UInt64(seconds * 1e9)
        var published = 0
        let batch = self.batch
        try payload.withUnsafeBytes { bytes in
            while BenchClock.now() < end {
                if batch > 0 {
                    // The same 1,000 chunks between two looks at the clock, `batch` per commit.
                    var left = 1000
                    while left > 0 {
                        let n = min(batch, left)
                        try publisher.publishBatch { (chunks: borrowing Publisher.Batch) throws(ShmBusError) in
                            for _ in 0..<n { try chunks.append(length: bytes.count) { $0.copyMemory(from: bytes) } }
                        }
                        left -= n
                    }
                } else {
                    for _ in 0..<1000 {
                        try publisher.publish(key: "", length: bytes.count) { $0.copyMemory(from: bytes) }
                    }
                }
                published += 1000
            }
        }
        let finished = BenchClock.now()
        await publisher.flush()
        Output.line("published \(published) \(start) \(finished) \(publisher.signalsSent) \(publisher.lastSequence)")
        _ = readLine()
        await publisher.close()
    }

    /// Reads every chunk; "stop LAST" on stdin says which sequence is the last.
    func floodSubscriber(_ bus: DBusConnection.Bus) async throws {
        let subscriber = try await Subscriber.open(channel: channel, on: bus, options: .init(start: .oldest))
        Output.line("ready")
        // The last sequence read and when, and the last one wanted. The reader updates
        // it after every event: the stop line may arrive after the last chunk was read,
        // while the reader waits for more, and then only the stopper can end the loop.
        let progress = Lock<(read: UInt64, readAt: UInt64, wanted: UInt64, done: UInt64)>((0, 0, .max, 0))
        let stopper = Thread {
            guard let line = readLine(), let wanted = UInt64(line.split(separator: " ").last ?? "") else { return }
            let finished = progress.withLock { state -> Bool in
                state.wanted = wanted
                guard state.read >= wanted else { return false }
                state.done = state.readAt
                return true
            }
            if finished { subscriber.cancel() }
        }
        stopper.start()
        var received: UInt64 = 0
        var missed: UInt64 = 0
        var ordered = true
        var last: UInt64 = 0
        // By the batch (`Subscriber.batches`): one async call per read, not per chunk.
        for try await events in subscriber.batches {
            for event in events {
                switch event {
                case .chunk(let chunk):
                    ordered = ordered && chunk.sequence > last
                    last = chunk.sequence
                    received += 1
                case .gap(let n, let after):
                    missed += n
                    last = after + n
                case .publisherLeft:
                    continue
                }
            }
            let now = BenchClock.now()
            let reached = progress.withLock { state -> Bool in
                state.read = last
                state.readAt = now
                guard last >= state.wanted else { return false }
                if state.done == 0 { state.done = now }
                return true
            }
            if reached { break }
        }
        let done = progress.withLock { $0.done == 0 ? BenchClock.now() : $0.done }
        subscriber.cancel()
        Output.line("received \(received) missed \(missed) ordered \(ordered) done \(done) signals \(subscriber.statistics.signals)")
    }

    /// Measures how long getting a view of a chunk takes, for a small and a large one,
    /// and how much private memory reading the large one costs.
    func viewProbe(_ bus: DBusConnection.Bus) async throws {
        let registry = try await RegistryClient.connect(to: bus)
        var results: [String: Samples] = [:]
        var growth: UInt64 = 0
        var touched: UInt64 = 0
        for key in ["small", "big"] {
            let found = try await registry.lookup(channel: channel, key: key)
            let (fd, _) = try await registry.openSegment(found.segment)
            let reader = try SegmentReader(fd: fd)
            var samples: [UInt64] = []
            for _ in 0..<count {
                let start = BenchClock.now()
                // A view: find the newest record with the key, validate it, point at its
                // payload, touch its first byte.
                guard let chunk = try reader.latest(key: key) else { throw ShmBusError(.notFound, "no chunk '\(key)'") }
                touched &+= UInt64(chunk.withUnsafeBytes { $0.first ?? 0 })
                samples.append(BenchClock.now() - start)
            }
            results[key] = Samples(nanoseconds: samples, unit: "µs")
            if key == "big", let chunk = try reader.latest(key: "big") {
                let before = residentAnonymousBytes()
                touched &+= chunk.withUnsafeBytes(benchChecksum)
                let after = residentAnonymousBytes()
                growth = after > before ? after - before : 0
            }
        }
        let small = results["small"] ?? Samples(nanoseconds: [])
        let big = results["big"] ?? Samples(nanoseconds: [])
        Output.line("views \(small.p50) \(small.p99) \(big.p50) \(big.p99) growth \(growth) touched \(touched & 1)")
    }
}
