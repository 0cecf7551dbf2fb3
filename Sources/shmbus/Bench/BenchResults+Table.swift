import Foundation

/// The human-readable report of `shmbus bench`: the machine, then one table for each part
/// that ran.
extension BenchResults {
    var table: String {
        var parts = [
            "machine: \(machine.cores) cores, \(f(machine.memoryGiB, 1)) GiB, \(machine.cpu), Linux \(machine.kernel), "
                + "\(machine.busDaemon), \(machine.build) build, shared-memory huge pages: \(machine.shmemHugePages)"
        ]
        if !blobs.isEmpty { parts.append(blobTable) }
        if let latency { parts.append(Self.latencyTable(latency)) }
        if !throughput.isEmpty { parts.append(throughputTable) }
        if let views { parts.append(Self.viewTable(views)) }
        if let requests { parts.append(requests.table) }
        if !blobCalls.isEmpty { parts.append(blobCallTable) }
        if !bridge.isEmpty { parts.append(bridgeTable) }
        return parts.joined(separator: "\n\n")
    }

    private var blobTable: String {
        func ms(_ s: Samples) -> String { s.count == 0 ? "-" : "\(f(s.p50, 3)) / \(f(s.p99, 3))" }
        var table = TextTable(
            "SIZE", "SHMBUS", "SHMBUS FUTEX", "FUTEX REUSE", "SHMBUS COPY", "D-BUS ay", "MEMCPY", "MEMCPY FRESH", "D-BUS/SHMBUS",
            "D-BUS/FUTEX", "REUSE/FUTEX", "SHMBUS/MEMCPY", "SHMBUS/FRESH", "COPY/FRESH", "D-BUS/COPY", "OK")
        for b in blobs {
            table.add(
                ByteCount.human(b.size), ms(b.shmbus), ms(b.shmbusFutex), ms(b.shmbusReuse), ms(b.shmbusCopy),
                b.dbus.map(ms) ?? "cannot (>64 MiB)", ms(b.memcpy), ms(b.memcpyFresh), b.dbusOverShmbus.map { f($0, 1) + "x" } ?? "-",
                b.dbusOverFutex.map { f($0, 1) + "x" } ?? "-", b.shmbusReuse.count == 0 ? "-" : f(b.reuseOverFutex) + "x", f(b.shmbusOverMemcpy) + "x", f(b.shmbusOverFreshMemcpy) + "x",
                f(b.copyOverFreshMemcpy) + "x", b.dbusOverCopy.map { f($0, 1) + "x" } ?? "-", b.errors == 0 ? "yes" : "\(b.errors) errors")
        }
        let preparing = blobs.map { "\(ByteCount.human($0.size)) \(ms($0.shmbusCopyPrepare))" }.joined(separator: ", ")
        return """
            1. Blob transfer: publisher holds the bytes -> subscriber has read every byte (ms, p50 / p99)
               SHMBUS: zero-copy publish (bytes written in place), the subscriber on the bus path; SHMBUS FUTEX: the same,
               the subscriber asleep on the doorbell (`Wait.futex`, async iterator); FUTEX REUSE: the same with
               `Publisher.Options.reuseMemory`, four blobs to a segment, measured once the channel cycles through memory the
               subscriber has mapped; SHMBUS COPY: `publish(bytes)` from private memory,
               after `Publisher.prepare` had the segment memory faulted in, off the clock (it waited \(preparing) ms);
               MEMCPY FRESH: mmap, copy and read in this process; COPY/FRESH: SHMBUS COPY over MEMCPY FRESH (p50)
            \(table.rendered)
            """
    }

    private static func latencyTable(_ latency: LatencyResult) -> String {
        var table = TextTable("PATH", "P50", "P99", "RATIO TO ITS BARE PATH (p50)", "WAITER CPU s/s")
        func cpu(_ value: Double?) -> String { value.map { f($0, 3) } ?? "-" }
        table.add("shmbus, bus signal", f(latency.busPath.p50, 1), f(latency.busPath.p99, 1), f(latency.busOverBare) + "x (bare signal)", "-")
        table.add("bare D-Bus signal", f(latency.bareSignal.p50, 1), f(latency.bareSignal.p99, 1), "1.00x", "-")
        table.add(
            "shmbus, futex (readBlocking)", f(latency.futexPath.p50, 1), f(latency.futexPath.p99, 1),
            f(latency.futexOverBareFutex) + "x (bare futex)", cpu(latency.waiterCPU.futex))
        table.add(
            "shmbus, futex (async iterator)", f(latency.futexIteratorPath.p50, 1), f(latency.futexIteratorPath.p99, 1),
            f(latency.futexIteratorOverBareFutex) + "x (bare futex)", "-")
        table.add("bare futex wake", f(latency.bareFutex.p50, 1), f(latency.bareFutex.p99, 1), "1.00x", "-")
        table.add(
            "shmbus, spin \(latency.spinBudgetMicroseconds) µs (readBlocking)", f(latency.spinPath.p50, 1), f(latency.spinPath.p99, 1),
            f(latency.spinOverBareSpin) + "x (bare spin)", cpu(latency.waiterCPU.spin))
        table.add("bare shared-memory spin", f(latency.bareSpin.p50, 1), f(latency.bareSpin.p99, 1), "1.00x", cpu(latency.waiterCPU.bareSpin))
        return """
            2. Notification latency, \(latency.size)-byte chunks at \(latency.rate)/s, \(latency.count) each, paths taking turns (µs, p50 / p99)
               WAITER CPU: CPU seconds per second of the waiting thread (CLOCK_THREAD_CPUTIME_ID), first chunk to last
            \(table.rendered)
            """
    }

    private var floorLine: String {
        guard let floor = throughputFloor else { return "" }
        return """

               floor: \(floor.recordBytes)-byte records written into a new memfd \(f(floor.freshRecordsPerSecond, 0))/s (first touch), \
            into the same pages again \(f(floor.warmRecordsPerSecond, 0))/s (no ShmBus code; every segment of a flood is new memory)
            """
    }

    private var throughputTable: String {
        var table = TextTable(
            "SUBSCRIBERS", "PUBLISH", "PUBLISHED/S", "RECEIVED/S (each)", "LAG ms (each)", "LOST", "IN ORDER", "BUS SIGNALS", "SIGNALS/S", "ALL ROUNDS (published/s)")
        for t in throughput {
            table.add(
                "\(t.subscribers)", t.batch > 0 ? "batches of \(t.batch)" : "one by one", f(t.publishedPerSecond, 0), t.subscriberResults.map { f($0.receivedPerSecond, 0) }.joined(separator: ", "),
                t.subscriberResults.map { f($0.lagMilliseconds, 1) }.joined(separator: ", "),
                "\(t.subscriberResults.map { Int(t.published) - Int($0.received) }.max() ?? 0)",
                t.subscriberResults.allSatisfy(\.inOrder) ? "yes" : "no", "\(t.signals)", f(t.signalsPerSecond, 0),
                t.publishedPerSecondByRound.map { f($0, 0) }.joined(separator: ", ") + (t.everyRoundComplete ? "" : " (some lost)"))
        }
        return """
            3. Small-chunk throughput, 64-byte chunks as fast as the publisher goes: the median of \(throughput.first?.publishedPerSecondByRound.count ?? 0) rounds
               (subscribers read with `Subscriber.batches`)
            \(table.rendered)\(floorLine)
            """
    }

    private static func viewTable(_ views: ViewResult) -> String {
        var table = TextTable("CHUNK", "VIEW p50 / p99", "RATIO", "PRIVATE MEMORY GROWTH")
        table.add(ByteCount.human(views.smallSize), "\(f(views.smallP50Microseconds, 2)) / \(f(views.smallP99Microseconds, 2))", "1.00x", "-")
        table.add(
            ByteCount.human(views.bigSize), "\(f(views.bigP50Microseconds, 2)) / \(f(views.bigP99Microseconds, 2))", f(views.bigOverSmall) + "x",
            ByteCount.human(views.privateMemoryGrowthBytes))
        return """
            4. Zero copy: time to get a view (µs, p50 / p99) and private memory growth while reading
            \(table.rendered)
            """
    }
}

/// `value` with `digits` decimals, for the tables.
func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
