// A peer process for the ShmBus tests (not installed):
//
//   shmbus-test-peer publish ADDRESS CHANNEL COUNT SIZE CAPACITY [persistent|wait]
//   shmbus-test-peer loop ADDRESS CHANNEL MAXSIZE CAPACITY SEED
//   shmbus-test-peer scribble ADDRESS CHANNEL SEED
//
// `publish` publishes COUNT chunks of SIZE bytes (payload: sequence, checksum of the
// rest, pseudo-random bytes), prints "published COUNT signals N", then holds the
// channel until stdin closes (or it is killed). With `wait`, it registers the channel,
// prints "ready", and publishes only after a line arrives on stdin.
//
// `loop` prints "ready" and publishes such chunks of random sizes (16...MAXSIZE) until
// it is killed: the reliability tests kill it at random points.
//
// `scribble` is a hostile publisher: it publishes 64 valid chunks, prints "ready", and
// for each line on stdin writes random bytes over its own sealed segment (header and
// records) through the writable mapping every publisher keeps, then prints "scribbled".
import DBus
import Foundation
import Glibc
import ShmBus
import TestSupport

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("test-peer: \(message)\n".utf8))
    exit(1)
}

/// The payload of chunk `sequence` (see TestPayload).
func fill(_ buffer: UnsafeMutableRawBufferPointer, sequence: UInt64) {
    TestPayload.fill(buffer, sequence: sequence)
}

let args = CommandLine.arguments
guard args.count >= 4 else { fail("usage: shmbus-test-peer publish|loop|scribble ADDRESS CHANNEL …") }
let (mode, address, channel) = (args[1], args[2], args[3])

/// xorshift64: the peers' pseudo-random numbers, reproducible from a seed.
struct Xorshift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func next(below bound: UInt64) -> UInt64 { next() % bound }
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

do {
    switch mode {
    case "publish":
        guard args.count >= 7, let count = Int(args[4]), let size = Int(args[5]), let capacity = UInt64(args[6]), size >= 16 else {
            fail("usage: shmbus-test-peer publish ADDRESS CHANNEL COUNT SIZE CAPACITY [persistent|wait]")
        }
        var options = Publisher.Options()
        options.capacity = capacity
        options.persistent = args.count > 7 && args[7] == "persistent"
        let waitForGo = args.count > 7 && args[7] == "wait"
        let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
        say("ready \(publisher.currentSegment)")
        if waitForGo { _ = readLine() }
        for _ in 0..<count {
            let next = publisher.lastSequence + 1
            try publisher.publish(length: Int(size)) { fill($0, sequence: next) }
        }
        await publisher.flush()
        say("published \(count) signals \(publisher.signalsSent) last \(publisher.lastSequence)")
        // Hold the channel until the test closes stdin.
        while let _ = readLine() {}
        await publisher.close()

    case "loop":
        guard args.count >= 7, let maxSize = UInt64(args[4]), let capacity = UInt64(args[5]), let seed = UInt64(args[6]), maxSize >= 16 else {
            fail("usage: shmbus-test-peer loop ADDRESS CHANNEL MAXSIZE CAPACITY SEED")
        }
        var options = Publisher.Options()
        options.capacity = capacity
        let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
        say("ready \(publisher.currentSegment)")
        var random = Xorshift(state: seed | 1)
        while true {
            let next = publisher.lastSequence + 1
            try publisher.publish(length: Int(16 + random.next(below: maxSize - 15))) { fill($0, sequence: next) }
            // Now and then a pause, so that kills land in idle moments too.
            if random.next(below: 64) == 0 { usleep(200) }
        }

    case "scribble":
        guard args.count >= 5, let seed = UInt64(args[4]) else { fail("usage: shmbus-test-peer scribble ADDRESS CHANNEL SEED") }
        var options = Publisher.Options()
        options.capacity = 1 << 20
        let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
        // The publisher's own writable mapping, found from a chunk's buffer and its
        // offset in the segment: exactly what a buggy or malicious owner can reach.
        var segmentBase: UnsafeMutableRawPointer?
        for index in 0..<64 {
            let next = publisher.lastSequence + 1
            var base: UnsafeMutableRawPointer?
            let chunk = try publisher.publish(key: "k\(index % 8)", length: 64 + Int(index) * 8) { buffer in
                fill(buffer, sequence: next)
                base = buffer.baseAddress
            }
            if let base { segmentBase = base - Int(chunk.offset) }
        }
        await publisher.flush()
        guard let segmentBase else { fail("no chunk published") }
        say("ready \(publisher.currentSegment)")
        var random = Xorshift(state: seed | 1)
        let span = 64 * 1024  // The header and every record of the 64 chunks.
        while let _ = readLine() {
            // Some random bytes anywhere, and some words set to extreme values.
            for _ in 0..<(1 + random.next(below: 4)) {
                let offset = Int(random.next(below: UInt64(span)))
                segmentBase.storeBytes(of: UInt8(truncatingIfNeeded: random.next()), toByteOffset: offset, as: UInt8.self)
            }
            for _ in 0..<random.next(below: 2) {
                let offset = Int(random.next(below: UInt64(span / 8))) * 8
                let extremes: [UInt64] = [0, .max, UInt64(Int64.max), 1 << 32, 0xFFFF_FFFF, random.next()]
                segmentBase.storeBytes(of: extremes[Int(random.next(below: 6))], toByteOffset: offset, as: UInt64.self)
            }
            say("scribbled")
        }
        await publisher.close()

    default:
        fail("unknown mode \(mode)")
    }
} catch {
    fail("\(error)")
}
