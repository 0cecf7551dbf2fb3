/// The request/response part's figures: round trips of `size` bytes each way.
struct RequestsResult: Encodable, Sendable {
    var size: Int
    /// How long each path ran, in all.
    var seconds: Double
    var shmbusBus = Samples(nanoseconds: [])
    var shmbusFutex = Samples(nanoseconds: [])
    var dbus = Samples(nanoseconds: [])
    var errors = 0

    func perSecond(_ samples: Samples) -> Double { Double(samples.count) / seconds }
    /// ShmBus round trips per second over D-Bus method calls per second.
    var busOverDBus: Double { perSecond(shmbusBus) / perSecond(dbus) }
    var futexOverDBus: Double { perSecond(shmbusFutex) / perSecond(dbus) }

    var table: String {
        var table = TextTable("PATH", "ROUND TRIPS/S", "P50 µs", "P99 µs", "RATE TO D-BUS")
        table.add("shmbus, bus signal", f(perSecond(shmbusBus), 0), f(shmbusBus.p50, 1), f(shmbusBus.p99, 1), f(busOverDBus) + "x")
        table.add("shmbus, futex", f(perSecond(shmbusFutex), 0), f(shmbusFutex.p50, 1), f(shmbusFutex.p99, 1), f(futexOverDBus) + "x")
        table.add("D-Bus call, ay both ways", f(perSecond(dbus), 0), f(dbus.p50, 1), f(dbus.p99, 1), "1.00x")
        return """
            5. Request/response: \(ByteCount.human(UInt64(size))) each way, back to back, \(f(seconds, 1)) s per path (round trips)
            \(table.rendered)\(errors == 0 ? "" : "\n   \(errors) replies were wrong")
            """
    }
}
