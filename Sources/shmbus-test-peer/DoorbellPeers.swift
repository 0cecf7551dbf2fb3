// The peers of the doorbell tests (DoorbellAttackTests): a hostile reader that does to
// the futex doorbell whatever the descriptors a reader is handed allow, an honest
// futex subscriber that audits what it receives and measures its own CPU time, and a
// publisher that publishes at a fixed pace and measures its own rate.
import CShmBusLinux
import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import Synchronization
import TestSupport

/// This process's CPU time (user + system, every thread) and voluntary context
/// switches (each futex sleep that really slept is one): `getrusage(RUSAGE_SELF)`.
func processUsage() -> (cpuMicroseconds: Int, sleeps: Int) {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec
    return (Int(cpu), Int(usage.ru_nvcsw))
}

func microseconds(since start: ContinuousClock.Instant) -> Int {
    let elapsed = ContinuousClock.now - start
    return Int(elapsed.components.seconds) * 1_000_000 + Int(elapsed.components.attoseconds / 1_000_000_000_000)
}

/// The outcome of a call that returns -1 and sets errno: "ok" or the errno's name.
func outcome(_ succeeded: Bool) -> String {
    if succeeded { return "ok" }
    let names: [Int32: String] = [
        EPERM: "EPERM", EACCES: "EACCES", EBADF: "EBADF", EFAULT: "EFAULT", EINVAL: "EINVAL", EBUSY: "EBUSY", EAGAIN: "EAGAIN",
    ]
    return names[errno] ?? "errno\(errno)"
}

/// What a reader of `channel` is handed: `OpenSegment` of the channel's current
/// segment, through the registry, exactly as a subscriber asks for it.
func readerHandout(address: String, channel: String) async throws -> (segment: UnixFileDescriptor, doorbell: UnixFileDescriptor) {
    let client = try await RegistryClient.connect(to: .address(address))
    defer { client.connection.close() }
    guard let properties = try await client.channel(channel) else { fail("no channel '\(channel)' in the registry") }
    let (segment, info) = try await client.openSegment(properties.currentSegment)
    guard let doorbell = info.doorbell else { fail("the registry handed out no doorbell for \(properties.currentSegment)") }
    return (segment, doorbell)
}

/// Maps `fd` shared, or returns nil with errno set.
func mapShared(_ fd: Int32, writable: Bool) -> UnsafeMutableRawPointer? {
    let address = mmap(nil, 4096, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0)
    return address == MAP_FAILED ? nil : address
}

/// `probe`: tries every way of writing or disturbing that the handed-out descriptors
/// might allow, and prints one "probe WHAT OUTCOME" line per attempt, then "probed".
func probeHandout(_ handout: (segment: UnixFileDescriptor, doorbell: UnixFileDescriptor)) {
    func report(_ what: String, _ result: String) { say("probe \(what) \(result)") }
    func accessMode(_ fd: Int32) -> String {
        switch fcntl(fd, F_GETFL) & O_ACCMODE {
        case O_RDONLY: "O_RDONLY"
        case O_RDWR: "O_RDWR"
        default: "other"
        }
    }
    for (name, handed) in [("doorbell", handout.doorbell), ("segment", handout.segment)] {
        let fd = handed.rawValue
        report("\(name).mode", accessMode(fd))
        report("\(name).seals", String(format: "0x%x", shmbus_get_seals(fd)))
        report("\(name).mmap-write", outcome(mapShared(fd, writable: true).map { munmap($0, 4096) } != nil))
        var value: UInt32 = 0xDEAD_BEEF
        // Offset 8: the doorbell's futex word; in a segment, inside the immutable header.
        report("\(name).pwrite", outcome(pwrite(fd, &value, 4, 8) == 4))
        report("\(name).ftruncate", outcome(ftruncate(fd, 0) == 0))
        report("\(name).grow", outcome(ftruncate(fd, 1 << 20) == 0))
        report("\(name).add-seals", outcome(shmbus_add_seals(fd, 0x0008) == 0))
        // A descriptor opened read-only protects nothing by itself: the file can be
        // opened again for writing through /proc, as far as its mode allows.
        let reopened = open("/proc/self/fd/\(fd)", O_RDWR | O_CLOEXEC)
        report("\(name).reopen-rdwr", outcome(reopened >= 0))
        if reopened >= 0 {
            report("\(name).reopened.mmap-write", outcome(mapShared(reopened, writable: true).map { munmap($0, 4096) } != nil))
            report("\(name).reopened.pwrite", outcome(pwrite(reopened, &value, 4, 8) == 4))
            close(reopened)
        }
        guard let readable = mapShared(fd, writable: false) else {
            report("\(name).mmap-read", outcome(false))
            continue
        }
        report("\(name).mprotect-write", outcome(mprotect(readable, 4096, PROT_READ | PROT_WRITE) == 0))
        // Futex operations need only a readable mapping: offset 8 of the doorbell is
        // its word; offset 384 of a segment is the commit word.
        let word = (readable + (name == "doorbell" ? 8 : 384)).assumingMemoryBound(to: UInt32.self)
        report("\(name).futex-wake", outcome(shmbus_futex_wake(word, .max) >= 0))
        var elsewhere: UInt32 = 0
        report("\(name).futex-requeue", outcome(shmbus_futex_cmp_requeue(word, word.pointee, 0, .max, &elsewhere) >= 0))
        munmap(readable, 4096)
    }
    say("probed")
}

/// Set when the attack is to end: a line on stdin, or its end.
let attackEnds = Atomic(false)

/// `attack`: on this thread, does one thing to the doorbell as fast as it can until a
/// line arrives on stdin (or it closes, or `seconds` pass), then prints "attacked N"
/// (operations done). "burn" is the control: the same busy loop on a private page, so
/// that a test can tell what the doorbell costs from what a busy process costs.
func attackDoorbell(_ doorbell: UnixFileDescriptor, how: String, seconds: Double) {
    Thread {
        _ = readLine()
        attackEnds.store(true, ordering: .releasing)
    }.start()
    guard let base = mapShared(doorbell.rawValue, writable: true) else { fail("cannot map the doorbell writable: \(outcome(false))") }
    let privatePage = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
    let word = (base + 8).assumingMemoryBound(to: UInt32.self)
    let sleeping = (base + 12).assumingMemoryBound(to: UInt32.self)
    var elsewhere: UInt32 = 0
    var random = Xorshift(state: 0x5EED)
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    var operations = 0
    say("attacking \(how)")
    while true {
        for _ in 0..<256 {
            switch how {
            case "garbage":
                // Magic, word and flag: any values at all, the extremes included.
                let value = random.next()
                let offset = Int(value >> 62) * 4
                let extremes: [UInt32] = [0, 1, .max, UInt32(truncatingIfNeeded: value)]
                shmbus_store_release_u32((base + offset).assumingMemoryBound(to: UInt32.self), extremes[Int(value >> 60) & 3])
            case "spin":
                // A word that never holds still: every FUTEX_WAIT that read it a moment
                // ago returns at once (EAGAIN).
                _ = shmbus_fetch_add_u32(word, 1)
            case "wake":
                _ = shmbus_futex_wake(word, .max)
            case "requeue":
                // Moves the honest sleepers to a private word that nobody will wake.
                _ = shmbus_futex_cmp_requeue(word, shmbus_load_acquire_u32(word), 0, .max, &elsewhere)
            case "silence":
                // "Nobody sleeps": the writer would never ring.
                shmbus_store_release_u32(sleeping, 0)
            case "pin":
                // "Someone sleeps", always: the writer would ring after every commit.
                shmbus_store_release_u32(sleeping, 1)
            case "burn":
                privatePage.storeBytes(of: UInt32(truncatingIfNeeded: operations), toByteOffset: 12, as: UInt32.self)
            default:
                fail("unknown attack '\(how)'")
            }
            operations += 1
        }
        if attackEnds.load(ordering: .acquiring) || ContinuousClock.now >= deadline { break }
    }
    say("attacked \(operations)")
}

/// `futex-subscribe`: reads the channel from its oldest chunk with `Wait.futex` (or,
/// with `spin`, `Wait.spin` of `Wait.defaultSpinBudget`) until
/// `count` chunks came, checking each (payload, order, gaps), and prints one line:
/// "received N gaps G missed M problems P cpu_us C wall_us W sleeps S latency_p50_us …
/// latency_p99_us … latency_max_us …" (from each chunk's timestamp to its delivery).
func futexSubscribe(address: String, channel: String, count: Int, blocking: Bool, spin: Bool = false) async throws {
    let wait: Subscriber.Wait = spin ? .spin(Subscriber.Wait.defaultSpinBudget) : .futex
    let subscriber = try await Subscriber.open(
        channel: channel, on: .address(address), options: .init(start: .oldest, wait: wait, endWhenPublisherLeaves: true))
    say("ready")
    let (startCPU, startSleeps) = processUsage()
    let start = ContinuousClock.now
    // Touched only by the one reading loop (a task, or the reading thread).
    final class Audit: @unchecked Sendable {
        var received = 0, gaps = 0, problems = 0
        var missed: UInt64 = 0
        var next: UInt64 = 1
        /// Microseconds from each chunk's reservation (its timestamp) to its delivery.
        var latencies: [Int] = []
        /// Whether to go on.
        func latency(_ fraction: Double) -> Int {
            let sorted = latencies.sorted()
            return sorted.isEmpty ? -1 : sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * fraction + 0.5))]
        }

        func take(_ event: Subscriber.Event, until count: Int) -> Bool {
            switch event {
            case .chunk(let chunk):
                if chunk.sequence != next || !TestPayload.check(chunk) { problems += 1 }
                next = chunk.sequence + 1
                received += 1
                latencies.append(Int(RealtimeClock.now() &- chunk.timestamp) / 1000)
            case .gap(let count, let after):
                gaps += 1
                missed += count
                next = after + count + 1
            case .publisherLeft:
                return false
            }
            return received < count
        }
    }
    let audit = Audit()
    if blocking {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { try subscriber.readBlocking { audit.take($0, until: count) } }) }.start()
        }
    } else {
        for try await event in subscriber where !audit.take(event, until: count) { break }
    }
    let (cpu, sleeps) = processUsage()
    say(
        "received \(audit.received) gaps \(audit.gaps) missed \(audit.missed) problems \(audit.problems) "
            + "cpu_us \(cpu - startCPU) wall_us \(microseconds(since: start)) sleeps \(sleeps - startSleeps) "
            + "latency_p50_us \(audit.latency(0.5)) latency_p99_us \(audit.latency(0.99)) latency_max_us \(audit.latency(1))")
    subscriber.cancel()
}

/// `paced`: once a line arrives on stdin, publishes `count` chunks of `size` bytes,
/// `interval` microseconds apart (0: as fast as it can), then prints
/// "published COUNT us T cpu_us C rings R fruitless F held_back H" (the doorbell's
/// statistics) and holds the channel until stdin closes.
func publishPaced(address: String, channel: String, count: Int, size: Int, capacity: UInt64, interval: Int) async throws {
    var options = Publisher.Options()
    options.capacity = capacity
    let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
    say("ready \(publisher.currentSegment)")
    _ = readLine()
    let (startCPU, _) = processUsage()
    let start = ContinuousClock.now
    for index in 0..<count {
        let next = publisher.lastSequence + 1
        try publisher.publish(length: size) { fill($0, sequence: next) }
        if interval > 0 {
            // Against a fixed schedule, so that a slow moment does not slow the pace.
            let due = start + .microseconds(interval * (index + 1))
            if ContinuousClock.now < due { try await Task.sleep(until: due, clock: .continuous) }
        }
    }
    let elapsed = microseconds(since: start)
    let (cpu, _) = processUsage()
    await publisher.flush()
    let rings = publisher.doorbellStatistics
    say(
        "published \(count) us \(elapsed) cpu_us \(cpu - startCPU) rings \(rings.rings) fruitless \(rings.fruitlessRings) "
            + "held_back \(rings.heldBack)")
    while let _ = readLine() {}
    await publisher.close()
}
