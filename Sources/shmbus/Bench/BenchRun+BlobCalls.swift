import DBus
import Foundation
import ShmBus
import ShmBusTesting

/// 6. Blob calls (issue 16): one D-Bus method call whose argument and reply are a
/// `size`-byte blob (docs/BLOBS.md), against the same call with `ay` both ways, through
/// the same daemon to the same service process, in the same run. The paths take turns
/// within each repetition, so a machine busy with something else slows them alike.
///
/// Each round trip starts with the bytes in the client's private memory (but in "made":
/// already in a blob) and ends when the client has read every byte of the reply (a
/// checksum). The blob's time includes
/// making it (above the threshold, the copy into a new sealed memfd), the service's
/// checks, and mapping the reply. `Echo` sends the service's argument back as it is (a
/// memfd returns as the same sealed file: what a service that passes data on pays);
/// `Copy` makes the reply a new memfd of the service's own with the same bytes (what a
/// service that computes its reply pays: one more copy, into fresh memory). `ay` is
/// `EchoBytes`: libdbus's marshalling and the daemon's copies, both ways.
extension BenchRun {
    func blobCalls(size: Int, repetitions: Int) async throws -> BlobCallResult {
        let warmup = 2
        var result = BlobCallResult(size: size)
        let server = try await worker("blob-server")
        let destination = String(server.readyLine.split(separator: " ").last ?? "")
        let connection = try await DBusConnection.connect(to: bus.bus)
        defer { connection.close() }
        let proxy = BlobEcho1.Proxy(connection: connection, destination: destination, path: BlobEchoService.path)
        var source = [UInt8](repeating: 0, count: size)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in source.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            source[i] = UInt8(truncatingIfNeeded: state)
        }
        let expected = source.withUnsafeBytes(benchChecksum)
        let timeout: Duration = .seconds(300)
        let withAy = size <= DBusLimits.maximumArrayLength
        result.inline = size < Blob.defaultThreshold

        /// One blob round trip: make (unless `made`: then the clock starts with the bytes
        /// already in a blob, as a producer that writes into one has them), call, map, read
        /// every byte. Every value is released after the clock stops, as `ay`'s are: on
        /// this machine freeing 64 MiB of shmem takes 12 ms (see docs/BENCHMARKS.md).
        func trip(threshold: Int, copy: Bool, made: Bool = false) async throws -> UInt64 {
            let ready = made ? try Blob(source, threshold: threshold) : nil
            let start = BenchClock.now()
            let blob = try ready ?? Blob(source, threshold: threshold)
            let reply = copy ? try await proxy.copy(blob: blob, timeout: timeout) : try await proxy.echo(blob: blob, timeout: timeout)
            let bytes = try reply.map()
            bytes.prefetch()
            let checksum = bytes.withUnsafeBytes(benchChecksum)
            let done = BenchClock.now()
            withExtendedLifetime((blob, reply, bytes)) {}
            if checksum != expected || reply.isInline != blob.isInline { result.errors += 1 }
            return done - start
        }

        var echo: [UInt64] = []
        var made: [UInt64] = []
        var copy: [UInt64] = []
        var memfd: [UInt64] = []
        var ay: [UInt64] = []
        for rep in 0..<(repetitions + warmup) {
            let kept = rep >= warmup
            let e = try await trip(threshold: Blob.defaultThreshold, copy: false)
            let p = try await trip(threshold: Blob.defaultThreshold, copy: false, made: true)
            let c = try await trip(threshold: Blob.defaultThreshold, copy: true)
            // Below the threshold: what the memfd form would cost there.
            let m = result.inline ? try await trip(threshold: 0, copy: false) : e
            if kept {
                echo.append(e)
                made.append(p)
                copy.append(c)
                memfd.append(m)
            }
            if withAy {
                let start = BenchClock.now()
                let reply = try await proxy.echoBytes(bytes: source, timeout: timeout)
                let checksum = reply.withUnsafeBytes(benchChecksum)
                let done = BenchClock.now()
                withExtendedLifetime(reply) {}
                if checksum != expected { result.errors += 1 }
                if kept { ay.append(done - start) }
            }
        }
        result.echo = Samples(nanoseconds: echo, unit: "ms")
        result.made = Samples(nanoseconds: made, unit: "ms")
        result.copy = Samples(nanoseconds: copy, unit: "ms")
        result.memfd = Samples(nanoseconds: memfd, unit: "ms")
        if withAy { result.dbus = Samples(nanoseconds: ay, unit: "ms") }
        try server.send("quit")
        await server.finish()
        return result
    }
}
