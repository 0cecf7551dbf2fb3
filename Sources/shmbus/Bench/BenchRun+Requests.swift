import DBus
import Foundation
import ShmBus

/// 5. Request/response: a client and a server in two processes trading `size`-byte
/// messages back to back, each request sent once the previous reply arrived; over
/// ShmBus (both ends publish and subscribe, on the bus path and on the futex path) and
/// as D-Bus method calls carrying `ay` both ways, through the same daemon.
extension BenchRun {
    func requests(size: Int, seconds: Double, rounds: Int) async throws -> RequestsResult {
        var result = RequestsResult(size: size, seconds: seconds * Double(rounds))
        for wait in ["bus", "futex"] {
            let channel = "bench/requests-\(wait)"
            let server = try await worker("request-server", ["--channel", channel, "--wait", wait])
            let client = try await worker("request-client", ["--channel", channel, "--wait", wait, "--size", "\(size)"])
            var trips: [UInt64] = []
            for _ in 0..<rounds {
                try client.send("go \(seconds)")
                let done = try await client.line().split(separator: " ")
                guard done.count == 3, done[0] == "done", let errors = Int(done[2]) else {
                    throw ShmBusError(.bus, "unexpected request-client output: \(done)")
                }
                result.errors += errors
                trips += try JSONDecoder().decode([UInt64].self, from: Data(try await client.line().utf8))
            }
            try client.send("quit")
            await client.finish()
            try server.send("quit")
            await server.finish()
            let samples = Samples(nanoseconds: trips)
            if wait == "bus" { result.shmbusBus = samples } else { result.shmbusFutex = samples }
        }

        // D-Bus: `Echo(ay) -> ay`, the same bytes each way, back to back.
        let server = try await worker("ay-server")
        let destination = String(server.readyLine.split(separator: " ").last ?? "")
        let connection = try await DBusConnection.connect(to: bus.bus)
        let request = [UInt8](repeating: 0x5A, count: size)
        var trips: [UInt64] = []
        let end = BenchClock.now() + UInt64(seconds * Double(rounds) * 1e9)
        while BenchClock.now() < end {
            let start = BenchClock.now()
            let reply = try await connection.call(
                destination: destination, path: "/org/shmbus/Bench1", interface: "org.shmbus.Bench1", method: "Echo", [.bytes(request)],
                timeout: .seconds(60))
            let done = BenchClock.now()
            if reply != [.bytes(request)] { result.errors += 1 }
            trips.append(done - start)
        }
        connection.close()
        try server.send("quit")
        await server.finish()
        result.dbus = Samples(nanoseconds: trips)
        return result
    }
}
