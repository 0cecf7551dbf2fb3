import Foundation

struct BlobResult: Encodable, Sendable {
    var size: UInt64
    /// Zero-copy publishing: the bytes are already in the segment when the clock starts.
    var shmbus = Samples(nanoseconds: [])
    /// Zero-copy publishing to a subscriber asleep on the doorbell (`Wait.futex`).
    var shmbusFutex = Samples(nanoseconds: [])
    /// The same with reused memory (`Publisher.Options.reuseMemory`), four blobs to a
    /// segment, after the channel has cycled through its memory.
    var shmbusReuse = Samples(nanoseconds: [])
    /// Publishing from private memory: one copy into the segment inside the timing.
    var shmbusCopy = Samples(nanoseconds: [])
    /// How long the publisher waited, off the clock, for the memory of each copy to be
    /// faulted in (`Publisher.prepare`).
    var shmbusCopyPrepare = Samples(nanoseconds: [])
    /// nil above the 64 MiB array limit.
    var dbus: Samples?
    var memcpy = Samples(nanoseconds: [])
    var memcpyFresh = Samples(nanoseconds: [])
    var errors = 0

    /// D-Bus time over ShmBus time, at the median.
    var dbusOverShmbus: Double? { dbus.map { $0.p50 / shmbus.p50 } }
    var dbusOverFutex: Double? { dbus.map { $0.p50 / shmbusFutex.p50 } }
    /// Reused memory's time over fresh memory's, on the futex path, at the median.
    var reuseOverFutex: Double { shmbusReuse.p50 / shmbusFutex.p50 }
    /// ShmBus time over memcpy time, at the median.
    var shmbusOverMemcpy: Double { shmbus.p50 / memcpy.p50 }
    var shmbusOverFreshMemcpy: Double { shmbus.p50 / memcpyFresh.p50 }
    /// Publishing from private memory against a copy into fresh memory (issue 14:
    /// at most 1.5x) and against D-Bus (at least 5x faster), at the median.
    var copyOverFreshMemcpy: Double { shmbusCopy.p50 / memcpyFresh.p50 }
    var dbusOverCopy: Double? { dbus.map { $0.p50 / shmbusCopy.p50 } }

    init(size: UInt64) { self.size = size }
}

struct LatencyResult: Encodable, Sendable {
    var count: Int
    var rate: Int
    var size: Int
    var busPath = Samples(nanoseconds: [])
    /// `Wait.futex` read with `readBlocking` on a thread of its own.
    var futexPath = Samples(nanoseconds: [])
    /// `Wait.futex` read with the async iterator.
    var futexIteratorPath = Samples(nanoseconds: [])
    /// `Wait.spin(spinBudget)` read with `readBlocking` on a thread of its own.
    var spinPath = Samples(nanoseconds: [])
    /// A libdbus signal emit -> receive on the same bus, no ShmBus in between.
    var bareSignal = Samples(nanoseconds: [])
    /// A cross-process `FUTEX_WAKE` -> waiter running, no ShmBus in between.
    var bareFutex = Samples(nanoseconds: [])
    /// A store to a shared word -> a thread of another process spinning on it sees it.
    var bareSpin = Samples(nanoseconds: [])
    /// The spin budget of `spinPath`, µs (longer than the interval between chunks, so
    /// that the spin, not the futex after it, is what is measured).
    var spinBudgetMicroseconds = 0
    /// CPU seconds per second of the reading (or spinning) thread, by path: what waiting
    /// that way burns at this rate.
    var waiterCPU = WaiterCPU()

    struct WaiterCPU: Encodable, Sendable {
        var futex: Double?
        var spin: Double?
        var bareSpin: Double?
    }

    /// What each measurement is (see `LatencyResult.Path.latencyWait` for the ShmBus
    /// paths' `latency-sub --wait`).
    enum Path: String, CaseIterable {
        case bus, futex, futexIterator, spin, bareSignal, bareFutex, bareSpin
    }

    var busOverBare: Double { busPath.p50 / bareSignal.p50 }
    var futexOverBare: Double { futexPath.p50 / bareSignal.p50 }
    var futexOverBareFutex: Double { futexPath.p50 / bareFutex.p50 }
    var futexIteratorOverBareFutex: Double { futexIteratorPath.p50 / bareFutex.p50 }
    var spinOverBareSpin: Double { spinPath.p50 / bareSpin.p50 }
}

struct ThroughputResult: Encodable, Sendable {
    struct Subscriber: Encodable, Sendable {
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
    /// Chunks per `publishBatch`; 0: one `publish` each.
    var batch: Int
    var seconds: Double
    var published: UInt64
    var publishedPerSecond: Double
    var signals: UInt64
    var signalsPerSecond: Double
    var subscriberResults: [Subscriber] = []
    /// Chunks published per second in each round, in the order they ran; the other
    /// figures are the median round's.
    var publishedPerSecondByRound: [Double] = []
    /// Every round delivered every chunk to every subscriber, in order.
    var everyRoundComplete = true

    /// This round delivered every chunk to every subscriber, in order.
    var isComplete: Bool {
        subscriberResults.count == subscribers
            && subscriberResults.allSatisfy { $0.inOrder && $0.missed == 0 && $0.received == published }
    }
}

struct ViewResult: Encodable, Sendable {
    var smallSize: UInt64
    var bigSize: UInt64
    var smallP50Microseconds: Double
    var smallP99Microseconds: Double
    var bigP50Microseconds: Double
    var bigP99Microseconds: Double
    var privateMemoryGrowthBytes: UInt64

    var bigOverSmall: Double { bigP50Microseconds / smallP50Microseconds }
}

struct BenchResults: Encodable, Sendable {
    var machine: MachineInfo
    var quick: Bool
    var blobs: [BlobResult] = []
    /// nil when the part did not run (`--only`).
    var latency: LatencyResult?
    var throughput: [ThroughputResult] = []
    /// nil when the throughput part did not run.
    var throughputFloor: FreshMemoryFloor?
    /// nil when the part did not run (`--only`).
    var views: ViewResult?
    /// nil when the part did not run (`--only`).
    var requests: RequestsResult?
    var blobCalls: [BlobCallResult] = []
    var bridge: [BridgeResult] = []

    /// Every transfer arrived intact, and no subscriber lost or reordered a chunk.
    var allCorrect: Bool {
        blobs.allSatisfy { $0.errors == 0 }
            && throughput.allSatisfy { $0.isComplete && $0.everyRoundComplete }
            && (requests?.errors ?? 0) == 0
            && blobCalls.allSatisfy { $0.errors == 0 }
            && bridge.allSatisfy(\.complete)
    }

    enum CodingKeys: String, CodingKey {
        case machine, quick, blobs, latency, throughput, throughputFloor, views, requests, blobCalls, bridge, ratios
    }

    struct Ratios: Encodable {
        var dbusOverShmbusAt4KiB: Double?
        var dbusOverFutexAt4KiB: Double?
        var dbusOverShmbusAt64MiB: Double?
        var shmbusOverMemcpyAt64MiB: Double?
        var shmbusOverFreshMemcpyAt64MiB: Double?
        var copyOverFreshMemcpyAt64MiB: Double?
        var dbusOverCopyAt64MiB: Double?
        var busPathOverBareSignal: Double?
        var futexPathOverBareSignal: Double?
        var futexPathOverBareFutex: Double?
        var futexIteratorOverBareFutex: Double?
        var spinPathOverBareSpin: Double?
        var bigViewOverSmallView: Double?
        var requestsBusOverDBus: Double?
        var requestsFutexOverDBus: Double?
        var dbusOverBlobEchoAt64MiB: Double?
        var dbusOverBlobCopyAt64MiB: Double?
    }

    var ratios: Ratios {
        let at64 = blobs.first { $0.size == 64 << 20 }
        let at4 = blobs.first { $0.size == 4096 }
        return Ratios(
            dbusOverShmbusAt4KiB: at4?.dbusOverShmbus, dbusOverFutexAt4KiB: at4?.dbusOverFutex, dbusOverShmbusAt64MiB: at64?.dbusOverShmbus, shmbusOverMemcpyAt64MiB: at64?.shmbusOverMemcpy,
            shmbusOverFreshMemcpyAt64MiB: at64?.shmbusOverFreshMemcpy, copyOverFreshMemcpyAt64MiB: at64?.copyOverFreshMemcpy,
            dbusOverCopyAt64MiB: at64?.dbusOverCopy, busPathOverBareSignal: latency?.busOverBare,
            futexPathOverBareSignal: latency?.futexOverBare,
            futexPathOverBareFutex: latency?.futexOverBareFutex, futexIteratorOverBareFutex: latency?.futexIteratorOverBareFutex,
            spinPathOverBareSpin: latency?.spinOverBareSpin, bigViewOverSmallView: views?.bigOverSmall,
            requestsBusOverDBus: requests?.busOverDBus, requestsFutexOverDBus: requests?.futexOverDBus,
            dbusOverBlobEchoAt64MiB: blobCalls.first { $0.size == 64 << 20 }?.dbusOverEcho,
            dbusOverBlobCopyAt64MiB: blobCalls.first { $0.size == 64 << 20 }?.dbusOverCopy)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(machine, forKey: .machine)
        try container.encode(quick, forKey: .quick)
        try container.encode(blobs, forKey: .blobs)
        try container.encode(latency, forKey: .latency)
        try container.encode(throughput, forKey: .throughput)
        try container.encode(throughputFloor, forKey: .throughputFloor)
        try container.encode(views, forKey: .views)
        try container.encode(requests, forKey: .requests)
        try container.encode(blobCalls, forKey: .blobCalls)
        try container.encode(bridge, forKey: .bridge)
        try container.encode(ratios, forKey: .ratios)
    }

    init(machine: MachineInfo, quick: Bool) {
        self.machine = machine
        self.quick = quick
    }
}
