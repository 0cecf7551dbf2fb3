/// The blob-call part's figures for one size: round trips in milliseconds.
struct BlobCallResult: Encodable, Sendable {
    var size: Int
    /// Whether the default threshold sent this size inline.
    var inline = false
    /// A blob with the default threshold (`Blob.defaultThreshold`).
    var blob = Samples(nanoseconds: [])
    /// A blob always as a memfd (threshold 0), for where the threshold should be.
    var memfd = Samples(nanoseconds: [])
    /// `ay` both ways; nil above D-Bus's 64 MiB array limit.
    var dbus: Samples?
    var errors = 0

    /// `ay` time over blob time at the median (how many times faster the blob is).
    var dbusOverBlob: Double? { dbus.map { $0.p50 / blob.p50 } }
    var dbusOverMemfd: Double? { dbus.map { $0.p50 / memfd.p50 } }
}

extension BenchResults {
    var blobCallTable: String {
        func ms(_ s: Samples) -> String { s.count == 0 ? "-" : "\(f(s.p50, 3)) / \(f(s.p99, 3))" }
        var table = TextTable("SIZE", "BLOB", "FORM", "BLOB AS MEMFD", "D-BUS ay", "ay/BLOB", "ay/MEMFD", "OK")
        for c in blobCalls {
            table.add(
                ByteCount.human(UInt64(c.size)), ms(c.blob), c.inline ? "inline" : "memfd", ms(c.memfd),
                c.dbus.map(ms) ?? "impossible (>64 MiB)", c.dbusOverBlob.map { f($0, 1) + "x" } ?? "-",
                c.dbusOverMemfd.map { f($0, 1) + "x" } ?? "-", c.errors == 0 ? "yes" : "\(c.errors) errors")
        }
        return """
            6. Blob calls: one method call, a blob argument and a blob reply (docs/BLOBS.md), against the same call with ay both ways (ms p50 / p99, bytes in private memory to every reply byte read)
            \(table.rendered)
            """
    }
}
