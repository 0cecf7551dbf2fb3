import Foundation

struct BlobResult: Codable, Sendable {
    var size: UInt64
    /// Zero-copy publishing: the bytes are already in the segment when the clock starts.
    var shmbus = Samples(nanoseconds: [])
    /// Publishing from private memory: one copy into the segment inside the timing.
    var shmbusCopy = Samples(nanoseconds: [])
    /// nil above the 64 MiB array limit.
    var dbus: Samples?
    var memcpy = Samples(nanoseconds: [])
    var memcpyFresh = Samples(nanoseconds: [])
    var errors = 0

    /// D-Bus time over ShmBus time, at the median.
    var dbusOverShmbus: Double? { dbus.map { $0.p50 / shmbus.p50 } }
    /// ShmBus time over memcpy time, at the median.
    var shmbusOverMemcpy: Double { shmbus.p50 / memcpy.p50 }
    var shmbusOverFreshMemcpy: Double { shmbus.p50 / memcpyFresh.p50 }

    init(size: UInt64) { self.size = size }
}

struct LatencyResult: Codable, Sendable {
    var count: Int
    var rate: Int
    var size: Int
    var busPath = Samples(nanoseconds: [])
    var futexPath = Samples(nanoseconds: [])
    var bareSignal = Samples(nanoseconds: [])

    var busOverBare: Double { busPath.p50 / bareSignal.p50 }
    var futexOverBare: Double { futexPath.p50 / bareSignal.p50 }
}

struct ThroughputResult: Codable, Sendable {
    struct Subscriber: Codable, Sendable {
        var received: UInt64
        var missed: UInt64
        var inOrder: Bool
        /// Received over the publisher's window plus this subscriber's lag.
        var receivedPerSecond: Double
        /// How long after the publisher's last chunk this subscriber had read it.
        var lagMilliseconds: Double
        var signalsReceived: UInt64
    }

    var subscribers: Int
    var chunkSize: Int
    var seconds: Double
    var published: UInt64
    var publishedPerSecond: Double
    var signals: UInt64
    var signalsPerSecond: Double
    var subscriberResults: [Subscriber] = []
}

struct ViewResult: Codable, Sendable {
    var smallSize: UInt64
    var bigSize: UInt64
    var smallP50Microseconds: Double
    var smallP99Microseconds: Double
    var bigP50Microseconds: Double
    var bigP99Microseconds: Double
    var privateMemoryGrowthBytes: UInt64

    var bigOverSmall: Double { bigP50Microseconds / smallP50Microseconds }
}

struct BenchResults: Codable, Sendable {
    var machine: MachineInfo
    var quick: Bool
    var blobs: [BlobResult] = []
    var latency = LatencyResult(count: 0, rate: 0, size: 0)
    var throughput: [ThroughputResult] = []
    var views = ViewResult(smallSize: 0, bigSize: 0, smallP50Microseconds: 0, smallP99Microseconds: 0, bigP50Microseconds: 0, bigP99Microseconds: 0, privateMemoryGrowthBytes: 0)

    /// Every transfer arrived intact, and no subscriber lost or reordered a chunk.
    var allCorrect: Bool {
        blobs.allSatisfy { $0.errors == 0 }
            && throughput.allSatisfy { run in
                run.subscriberResults.count == run.subscribers
                    && run.subscriberResults.allSatisfy { $0.inOrder && $0.missed == 0 && $0.received == run.published }
            }
    }

    enum CodingKeys: String, CodingKey {
        case machine, quick, blobs, latency, throughput, views, ratios
    }

    struct Ratios: Codable {
        var dbusOverShmbusAt64MiB: Double?
        var shmbusOverMemcpyAt64MiB: Double?
        var shmbusOverFreshMemcpyAt64MiB: Double?
        var busPathOverBareSignal: Double
        var futexPathOverBareSignal: Double
        var bigViewOverSmallView: Double
    }

    var ratios: Ratios {
        let at64 = blobs.first { $0.size == 64 << 20 }
        return Ratios(
            dbusOverShmbusAt64MiB: at64?.dbusOverShmbus, shmbusOverMemcpyAt64MiB: at64?.shmbusOverMemcpy,
            shmbusOverFreshMemcpyAt64MiB: at64?.shmbusOverFreshMemcpy, busPathOverBareSignal: latency.busOverBare,
            futexPathOverBareSignal: latency.futexOverBare, bigViewOverSmallView: views.bigOverSmall)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(machine, forKey: .machine)
        try container.encode(quick, forKey: .quick)
        try container.encode(blobs, forKey: .blobs)
        try container.encode(latency, forKey: .latency)
        try container.encode(throughput, forKey: .throughput)
        try container.encode(views, forKey: .views)
        try container.encode(ratios, forKey: .ratios)
    }

    init(machine: MachineInfo, quick: Bool) {
        self.machine = machine
        self.quick = quick
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        machine = try container.decode(MachineInfo.self, forKey: .machine)
        quick = try container.decode(Bool.self, forKey: .quick)
        blobs = try container.decode([BlobResult].self, forKey: .blobs)
        latency = try container.decode(LatencyResult.self, forKey: .latency)
        throughput = try container.decode([ThroughputResult].self, forKey: .throughput)
        views = try container.decode(ViewResult.self, forKey: .views)
    }

    var table: String {
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        func ms(_ s: Samples) -> String { s.count == 0 ? "-" : "\(f(s.p50, 3)) / \(f(s.p99, 3))" }
        var out = "machine: \(machine.cores) cores, \(f(machine.memoryGiB, 1)) GiB, \(machine.cpu), Linux \(machine.kernel), \(machine.busDaemon), \(machine.build) build\n\n"
        out += "1. Blob transfer: publisher holds the bytes -> subscriber has read every byte (ms, p50 / p99)\n"
        out += "   SHMBUS: zero-copy publish (bytes written in place); SHMBUS COPY: published from private memory\n"
        var blobTable = TextTable(
            "SIZE", "SHMBUS", "SHMBUS COPY", "D-BUS ay", "MEMCPY", "MEMCPY FRESH", "D-BUS/SHMBUS", "SHMBUS/MEMCPY", "SHMBUS/FRESH", "OK")
        for b in blobs {
            blobTable.add(
                ByteCount.human(b.size), ms(b.shmbus), ms(b.shmbusCopy), b.dbus.map(ms) ?? "cannot (>64 MiB)", ms(b.memcpy), ms(b.memcpyFresh),
                b.dbusOverShmbus.map { f($0, 1) + "x" } ?? "-", f(b.shmbusOverMemcpy) + "x", f(b.shmbusOverFreshMemcpy) + "x",
                b.errors == 0 ? "yes" : "\(b.errors) errors")
        }
        out += blobTable.rendered + "\n\n"
        out += "2. Notification latency, \(latency.size)-byte chunks at \(latency.rate)/s, \(latency.count) each (µs, p50 / p99)\n"
        var latencyTable = TextTable("PATH", "P50", "P99", "RATIO TO BARE SIGNAL (p50)")
        latencyTable.add("shmbus, bus signal", f(latency.busPath.p50, 1), f(latency.busPath.p99, 1), f(latency.busOverBare) + "x")
        latencyTable.add("shmbus, futex", f(latency.futexPath.p50, 1), f(latency.futexPath.p99, 1), f(latency.futexOverBare) + "x")
        latencyTable.add("bare D-Bus signal", f(latency.bareSignal.p50, 1), f(latency.bareSignal.p99, 1), "1.00x")
        out += latencyTable.rendered + "\n\n"
        out += "3. Small-chunk throughput, 64-byte chunks as fast as the publisher goes\n"
        var floodTable = TextTable("SUBSCRIBERS", "PUBLISHED/S", "RECEIVED/S (each)", "LAG ms (each)", "LOST", "IN ORDER", "BUS SIGNALS", "SIGNALS/S")
        for t in throughput {
            floodTable.add(
                "\(t.subscribers)", f(t.publishedPerSecond, 0), t.subscriberResults.map { f($0.receivedPerSecond, 0) }.joined(separator: ", "),
                t.subscriberResults.map { f($0.lagMilliseconds, 1) }.joined(separator: ", "),
                "\(t.subscriberResults.map { Int(t.published) - Int($0.received) }.max() ?? 0)",
                t.subscriberResults.allSatisfy(\.inOrder) ? "yes" : "no", "\(t.signals)", f(t.signalsPerSecond, 0))
        }
        out += floodTable.rendered + "\n\n"
        out += "4. Zero copy: time to get a view (µs, p50 / p99) and private memory growth while reading\n"
        var viewTable = TextTable("CHUNK", "VIEW p50 / p99", "RATIO", "PRIVATE MEMORY GROWTH")
        viewTable.add(ByteCount.human(views.smallSize), "\(f(views.smallP50Microseconds, 2)) / \(f(views.smallP99Microseconds, 2))", "1.00x", "-")
        viewTable.add(
            ByteCount.human(views.bigSize), "\(f(views.bigP50Microseconds, 2)) / \(f(views.bigP99Microseconds, 2))", f(views.bigOverSmall) + "x",
            ByteCount.human(views.privateMemoryGrowthBytes))
        out += viewTable.rendered
        return out
    }
}
