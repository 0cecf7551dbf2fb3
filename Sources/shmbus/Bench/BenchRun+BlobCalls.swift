import DBus
import Foundation
import ShmBus
import ShmBusTesting

/// 6. Blob calls (issue 16): one D-Bus method call whose argument and reply are a
/// `size`-byte blob (docs/BLOBS.md), against the same call with `ay` both ways, through
/// the same daemon to the same service process, in the same run.
///
/// Each round trip starts with the bytes in the client's private memory and ends when
/// the client has read every byte of the reply (a checksum): the blob's time includes
/// making it (the copy into a sealed memfd above the threshold), the service's reading
/// it and making its reply (one more copy, into its own memfd), and mapping the reply;
/// the `ay` time includes libdbus's marshalling and the daemon's two copies each way.
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

        // The blob with the default threshold (inline below it), then always as a memfd.
        for threshold in [Blob.defaultThreshold, 0] {
            var samples: [UInt64] = []
            for rep in 0..<(repetitions + warmup) {
                let start = BenchClock.now()
                let blob = try Blob(source, threshold: threshold)
                let reply = try await proxy.echo(blob: blob, timeout: timeout)
                let bytes = try reply.map()
                bytes.prefetch()
                let checksum = bytes.withUnsafeBytes(benchChecksum)
                let done = BenchClock.now()
                if checksum != expected || reply.isInline != blob.isInline { result.errors += 1 }
                if rep >= warmup { samples.append(done - start) }
            }
            if threshold == 0 {
                result.memfd = Samples(nanoseconds: samples, unit: "ms")
            } else {
                result.blob = Samples(nanoseconds: samples, unit: "ms")
                result.inline = size < threshold
            }
        }

        // `ay` both ways, where D-Bus can carry it at all.
        if size <= DBusLimits.maximumArrayLength {
            var samples: [UInt64] = []
            for rep in 0..<(repetitions + warmup) {
                let start = BenchClock.now()
                let reply = try await proxy.echoBytes(bytes: source, timeout: timeout)
                let checksum = reply.withUnsafeBytes(benchChecksum)
                let done = BenchClock.now()
                if checksum != expected { result.errors += 1 }
                if rep >= warmup { samples.append(done - start) }
            }
            result.dbus = Samples(nanoseconds: samples, unit: "ms")
        }
        try server.send("quit")
        await server.finish()
        return result
    }
}
