/// The blob-call part's figures for one size: round trips in milliseconds.
struct BlobCallResult: Encodable, Sendable {
    var size: Int
    /// Whether the default threshold (`Blob.defaultThreshold`) sends this size inline.
    var inline = false
    /// `Echo`, default threshold: the service returns the blob it received.
    var echo = Samples(nanoseconds: [])
    /// `Echo` of a blob made before the clock started (the bytes already in a memfd).
    var made = Samples(nanoseconds: [])
    /// `Copy`, default threshold: the service returns a new blob of its own.
    var copy = Samples(nanoseconds: [])
    /// `Echo` always as a memfd (threshold 0): below the threshold, what the memfd
    /// form would cost; above it, the same figures as ``echo``.
    var memfd = Samples(nanoseconds: [])
    /// `ay` both ways (`EchoBytes`); nil above D-Bus's 64 MiB array limit.
    var dbus: Samples?
    var errors = 0

    /// `ay` time over blob time at the median: how many times faster the blob is.
    var dbusOverEcho: Double? { dbus.map { $0.p50 / echo.p50 } }
    var dbusOverMade: Double? { dbus.map { $0.p50 / made.p50 } }
    var dbusOverCopy: Double? { dbus.map { $0.p50 / copy.p50 } }
}

extension BenchResults {
    var blobCallTable: String {
        func ms(_ s: Samples) -> String { s.count == 0 ? "-" : "\(f(s.p50, 3)) / \(f(s.p99, 3))" }
        func ratio(_ r: Double?) -> String { r.map { f($0, 1) + "x" } ?? "-" }
        var table = TextTable(
            "SIZE", "FORM", "BLOB ECHO", "ECHO, MADE", "BLOB COPY", "ECHO AS MEMFD", "D-BUS ay", "ay/ECHO", "ay/MADE", "ay/COPY", "OK")
        for c in blobCalls {
            table.add(
                ByteCount.human(UInt64(c.size)), c.inline ? "inline" : "memfd", ms(c.echo), ms(c.made), ms(c.copy), ms(c.memfd),
                c.dbus.map(ms) ?? "impossible (>64 MiB)", ratio(c.dbusOverEcho), ratio(c.dbusOverMade), ratio(c.dbusOverCopy), c.errors == 0 ? "yes" : "\(c.errors) errors")
        }
        return """
            6. Blob calls: one method call with a blob argument and a blob reply (docs/BLOBS.md) against the same call with ay both ways; \
            ms p50 / p99 from the bytes in private memory (made: already in a blob) to every byte of the reply read; echo: the \
            service returns the blob it got, copy: a new one of its own
            \(table.rendered)
            """
    }
}
