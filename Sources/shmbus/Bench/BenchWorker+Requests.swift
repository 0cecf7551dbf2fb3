import DBus
import Foundation
import SharedSegments
import ShmBus

/// The two ends of the request/response part: a client that publishes a request and
/// waits for its reply before the next, and a server that answers each request with
/// its bytes, both over ShmBus channels (`CHANNEL/request`, `CHANNEL/reply`).
extension BenchWorker {
    var requestWait: Subscriber.Wait { wait == "futex" ? .futex : .bus }

    /// Answers every request with a reply holding the same bytes, written in place,
    /// until "quit" arrives on stdin.
    func requestServer(_ bus: DBusConnection.Bus) async throws {
        let publisher = try await Publisher.open(channel: "\(channel)/reply", on: bus)
        // Ready once the reply channel exists: the client's request channel comes after
        // it, and is read from its first chunk, so no request is missed.
        Output.line("ready")
        let requests = try await Subscriber.open(
            channel: "\(channel)/request", on: bus, options: .init(start: .oldest, wait: requestWait, waitForChannel: .seconds(30)))
        Thread.detachNewThread {
            while let line = readLine(), line != "quit" {}
            requests.cancel()
        }
        for try await request in requests.chunks {
            _ = try request.withUnsafeBytes { bytes in
                try publisher.publish(key: "reply", length: bytes.count) { $0.copyMemory(from: bytes) }
            }
        }
        await publisher.close()
    }

    /// For each "go SECONDS" line: publishes `size`-byte requests back to back for that
    /// long, each after the reply to the one before, and checks that every reply holds
    /// its request's bytes; prints "done ROUND_TRIPS ERRORS" and then the round trips'
    /// nanoseconds as a JSON array.
    func requestClient(_ bus: DBusConnection.Bus) async throws {
        let publisher = try await Publisher.open(channel: "\(channel)/request", on: bus)
        // The server's channel exists once it said ready, and holds nothing before the
        // first request.
        let replies = try await Subscriber.open(
            channel: "\(channel)/reply", on: bus, options: .init(start: .oldest, wait: requestWait, waitForChannel: .seconds(30)))
        var iterator = replies.chunks.makeAsyncIterator()
        Output.line("ready")
        var sequence: UInt64 = 0
        while let line = readLine(), line.hasPrefix("go") {
            let seconds = Double(line.split(separator: " ").last ?? "") ?? 1
            let end = BenchClock.now() + UInt64(seconds * 1e9)
            var trips: [UInt64] = []
            var errors = 0
            while BenchClock.now() < end {
                sequence += 1
                let start = BenchClock.now()
                let stamp = sequence
                _ = try publisher.publish(key: "request", length: size) { buffer in
                    // The sequence in every word: a reply to an older request shows.
                    let words = buffer.bindMemory(to: UInt64.self)
                    for index in words.indices { words[index] = stamp }
                }
                guard let reply = try await iterator.next() else { throw ShmBusError(.bus, "the reply channel ended") }
                let done = BenchClock.now()
                let right = reply.withUnsafeBytes { bytes in
                    bytes.count == size && bytes.bindMemory(to: UInt64.self).allSatisfy { $0 == stamp }
                }
                if !right { errors += 1 }
                trips.append(done - start)
            }
            Output.line("done \(trips.count) \(errors)")
            try JSONOutput.print(trips)
        }
        replies.cancel()
        await publisher.close()
    }
}
