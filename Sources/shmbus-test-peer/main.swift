// A peer process for the ShmBus tests (not installed):
//
//   shmbus-test-peer publish ADDRESS CHANNEL COUNT SIZE CAPACITY [persistent|wait]
//   shmbus-test-peer loop ADDRESS CHANNEL MAXSIZE CAPACITY SEED
//   shmbus-test-peer scribble ADDRESS CHANNEL SEED
//   shmbus-test-peer torn ADDRESS CHANNEL KEY=LENGTH KEY=LENGTH…
//   shmbus-test-peer flood ADDRESS CHANNEL KEY CONNECTIONS CALLS [publish]
//   shmbus-test-peer bystander ADDRESS CHANNEL KEY
//   shmbus-test-peer doorbell ADDRESS CHANNEL probe|zero-magic|ATTACK [SECONDS]
//   shmbus-test-peer futex-subscribe ADDRESS CHANNEL COUNT [blocking] [spin]
//   shmbus-test-peer paced ADDRESS CHANNEL COUNT SIZE CAPACITY INTERVAL_US
//   shmbus-test-peer register ADDRESS PREFIX
//   shmbus-test-peer metrics ADDRESS CHANNEL COUNT SIZE CAPACITY
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
//
// `torn` publishes one persistent chunk per KEY=LENGTH (an empty KEY: no key; LENGTH
// at least 16), all into one segment, and then leaves that segment exactly as a writer
// SIGKILLed between the two header stores of its last commit would (SegmentWriter's
// `commit`: the committed end, then the last sequence): the committed end covers the
// last record, while the last sequence, the counters and the obsolete bit of the
// key's previous chunk are as they were before that commit. It prints "torn SEGMENT
// SEQUENCE" (the last record's sequence; the header says one less) and waits to be
// killed (it exits when stdin closes).
//
// `flood` loads the daemon and `bystander` measures what that costs another client:
// see LoadPeers.swift.
//
// `doorbell` is a hostile reader: it opens the channel's current segment through the
// registry, as any reader may, and with what it is handed either tries every way of
// writing (`probe`, one "probe WHAT OUTCOME" line each), overwrites the doorbell's
// magic once (`zero-magic`, then "zeroed"), or attacks the doorbell for SECONDS
// (garbage, spin, wake, requeue, silence, pin; burn is the control), see
// DoorbellPeers.swift. Then it waits until stdin closes.
//
// `futex-subscribe` reads COUNT chunks with `Wait.futex` (the iterator, or
// `readBlocking` on a thread of its own; `spin`: `Wait.spin` instead) and prints what it received and what it cost
// it; `paced` publishes COUNT chunks INTERVAL_US apart once a line arrives on stdin,
// and prints what that took.
//
// `register` registers rounds of segments on request and holds them (RegisterPeer.swift).
//
// `metrics` bootstraps a swift-metrics backend and prints the library's counters after
// publishing and reading a channel (MetricsPeer.swift).
import CShmBusLinux
import DBus
import Foundation
import Glibc
import SharedSegments
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
guard args.count >= 4 else { fail("usage: shmbus-test-peer publish|loop|scribble|torn|doorbell|futex-subscribe|paced|flood|bystander|register|metrics ADDRESS CHANNEL …") }
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

/// The 64-bit header word at `offset` of the segment mapped at `base` (the writer's mapping).
func word(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt64> {
    (base + offset).assumingMemoryBound(to: UInt64.self)
}

/// The flags word of the record at `offset` of the segment mapped at `base`.
func flags(_ base: UnsafeMutableRawPointer, recordAt offset: Int) -> UnsafeMutablePointer<UInt32> {
    (base + offset + SegmentLayout.recordFlagsOffset).assumingMemoryBound(to: UInt32.self)
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

    case "torn":
        let plan = args.dropFirst(4).map { spec -> (key: String, length: Int) in
            guard let equals = spec.lastIndex(of: "="), let length = Int(spec[spec.index(after: equals)...]), length >= 16 else {
                fail("bad chunk '\(spec)': KEY=LENGTH, LENGTH at least 16")
            }
            return (String(spec[..<equals]), length)
        }
        guard plan.count >= 2 else { fail("usage: shmbus-test-peer torn ADDRESS CHANNEL KEY=LENGTH KEY=LENGTH…") }
        var options = Publisher.Options()
        options.capacity = 1 << 20
        // Kept after the kill, so that the next publisher has a history to continue.
        options.persistent = true
        // `Committed` signals are only wake-ups, and a writer that died inside its
        // commit never announced the chunk: with a long interval and no flush, no
        // signal goes out after the first one, so the segment alone tells.
        options.minimumSignalInterval = .seconds(3600)
        let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
        let L = SegmentLayout.self
        // The writable mapping, reached as `scribble` reaches it (a chunk's buffer less
        // its offset): public API only, what any owner of a segment can do, so no SPI
        // is needed. (`@testable import` is no way: it needs modules compiled for
        // testing, and this executable is built in release too.)
        var segmentBase: UnsafeMutableRawPointer?
        var wordsBefore: [(offset: Int, value: UInt64)] = []
        var flagsBefore: [(offset: Int, value: UInt32)] = []
        var last: PublishedChunk?
        for (index, planned) in plan.enumerated() {
            if index == plan.count - 1, let base = segmentBase {
                // What the last commit changes after its first store, as it was before.
                for offset in [L.lastSequenceOffset, L.recordCountOffset, L.liveBytesOffset, L.deadBytesOffset, L.liveChunksOffset] {
                    wordsBefore.append((offset, shmbus_load_acquire_u64(word(base, offset))))
                }
                var offset = L.headerSize
                let end = Int(shmbus_load_acquire_u64(word(base, L.committedEndOffset)))
                while offset < end {
                    flagsBefore.append((offset, shmbus_load_acquire_u32(flags(base, recordAt: offset))))
                    offset += Int(word(base, offset + L.recordLengthOffset).pointee)
                }
            }
            let next = publisher.lastSequence + 1
            var payload: UnsafeMutableRawPointer?
            let chunk = try publisher.publish(key: planned.key, length: planned.length) { buffer in
                fill(buffer, sequence: next)
                payload = buffer.baseAddress
            }
            guard let payload, last.map({ $0.segment == chunk.segment }) ?? true else {
                fail("chunk \(chunk.sequence) went to another segment: the plan must fit one (no collection)")
            }
            segmentBase = payload - Int(chunk.offset)
            last = chunk
        }
        guard let base = segmentBase, let last else { fail("nothing published") }
        // Undo everything after the committed end's store; the record stays committed.
        for (offset, value) in flagsBefore { shmbus_store_release_u32(flags(base, recordAt: offset), value) }
        for (offset, value) in wordsBefore { shmbus_store_release_u64(word(base, offset), value) }
        guard shmbus_load_acquire_u64(word(base, L.lastSequenceOffset)) == last.sequence - 1 else {
            fail("the header's last sequence is not \(last.sequence - 1)")
        }
        say("torn \(last.segment) \(last.sequence)")
        while let _ = readLine() {}
        exit(0)

    case "flood":
        guard args.count >= 7, let connections = Int(args[5]), let calls = Int(args[6]), connections > 0 else {
            fail("usage: shmbus-test-peer flood ADDRESS CHANNEL KEY CONNECTIONS CALLS [publish]")
        }
        try await flood(
            address: address, channel: channel, key: args[4], connections: connections, calls: calls, publish: args.count > 7 && args[7] == "publish")

    case "bystander":
        guard args.count >= 5 else { fail("usage: shmbus-test-peer bystander ADDRESS CHANNEL KEY") }
        try await bystander(address: address, channel: channel, key: args[4])

    case "doorbell":
        guard args.count >= 5 else { fail("usage: shmbus-test-peer doorbell ADDRESS CHANNEL probe|zero-magic|ATTACK [SECONDS]") }
        let handout = try await readerHandout(address: address, channel: channel)
        switch args[4] {
        case "probe":
            probeHandout(handout)
        case "zero-magic":
            guard let base = mapShared(handout.doorbell.rawValue, writable: true) else { fail("cannot map the doorbell: \(outcome(false))") }
            shmbus_store_release_u64(base.assumingMemoryBound(to: UInt64.self), 0)
            say("zeroed")
        default:
            attackDoorbell(handout.doorbell, how: args[4], seconds: args.count > 5 ? Double(args[5]) ?? 1 : 1)
        }
        while let _ = readLine() {}

    case "futex-subscribe":
        guard args.count >= 5, let count = Int(args[4]) else { fail("usage: shmbus-test-peer futex-subscribe ADDRESS CHANNEL COUNT [blocking] [spin]") }
        let flags = Set(args.dropFirst(5))
        try await futexSubscribe(address: address, channel: channel, count: count, blocking: flags.contains("blocking"), spin: flags.contains("spin"))

    case "paced":
        guard args.count >= 8, let count = Int(args[4]), let size = Int(args[5]), let capacity = UInt64(args[6]), let interval = Int(args[7]),
            size >= 16
        else {
            fail("usage: shmbus-test-peer paced ADDRESS CHANNEL COUNT SIZE CAPACITY INTERVAL_US")
        }
        try await publishPaced(address: address, channel: channel, count: count, size: size, capacity: capacity, interval: interval)

    case "register":
        try await registerRounds(address: address, prefix: channel)

    case "metrics":
        guard args.count >= 7, let count = Int(args[4]), let size = Int(args[5]), let capacity = UInt64(args[6]), size >= 16 else {
            fail("usage: shmbus-test-peer metrics ADDRESS CHANNEL COUNT SIZE CAPACITY")
        }
        try await publishWithMetrics(address: address, channel: channel, count: count, size: size, capacity: capacity)

    default:
        fail("unknown mode \(mode)")
    }
} catch {
    fail("\(error)")
}
