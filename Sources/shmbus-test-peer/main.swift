// A peer process for the ShmBus tests (not installed):
//
//   shmbus-test-peer publish ADDRESS CHANNEL COUNT SIZE CAPACITY [persistent|wait]
//
// With `wait`, it registers the channel, prints "ready", and publishes only after a
// line arrives on stdin.
//
// Publishes COUNT chunks of SIZE bytes (payload: sequence, checksum of the rest,
// pseudo-random bytes), prints "published COUNT signals N", then holds the channel
// until stdin closes (or it is killed).
import CShmBusLinux
import DBus
import Foundation
import Glibc
import ShmBus

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("test-peer: \(message)\n".utf8))
    exit(1)
}

/// The payload of chunk `sequence`: its sequence, a checksum of the rest, then bytes
/// derived from the sequence. `TestPayload.check` in the tests verifies it.
func fill(_ buffer: UnsafeMutableRawBufferPointer, sequence: UInt64) {
    var state = sequence &* 0x9E37_79B9_7F4A_7C15 | 1
    var i = 16
    while i + 8 <= buffer.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        buffer.storeBytes(of: state, toByteOffset: i, as: UInt64.self)
        i += 8
    }
    while i < buffer.count { buffer[i] = UInt8(truncatingIfNeeded: i); i += 1 }
    buffer.storeBytes(of: sequence, toByteOffset: 0, as: UInt64.self)
    let sum = shmbus_mix64(buffer.baseAddress! + 16, buffer.count - 16, 11)
    buffer.storeBytes(of: sum, toByteOffset: 8, as: UInt64.self)
}

let args = CommandLine.arguments
guard args.count >= 7, args[1] == "publish", let count = Int(args[4]), let size = Int(args[5]), let capacity = UInt64(args[6]),
    size >= 16
else { fail("usage: shmbus-test-peer publish ADDRESS CHANNEL COUNT SIZE CAPACITY [persistent]") }

var options = Publisher.Options()
options.capacity = capacity
options.persistent = args.count > 7 && args[7] == "persistent"
let waitForGo = args.count > 7 && args[7] == "wait"
do {
    let publisher = try await Publisher.open(channel: args[3], on: .address(args[2]), options: options)
    FileHandle.standardOutput.write(Data("ready \(publisher.currentSegment)\n".utf8))
    if waitForGo { _ = readLine() }
    for _ in 0..<count {
        let next = publisher.lastSequence + 1
        try publisher.publish(length: UInt64(size)) { fill($0, sequence: next) }
    }
    await publisher.flush()
    FileHandle.standardOutput.write(Data("published \(count) signals \(publisher.signalsSent) last \(publisher.lastSequence)\n".utf8))
    // Hold the channel until the test closes stdin.
    while let _ = readLine() {}
    await publisher.close()
} catch {
    fail("\(error)")
}
