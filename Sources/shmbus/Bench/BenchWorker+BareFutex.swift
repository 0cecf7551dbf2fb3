import ArgumentParser
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem

/// The floor of the futex path: one process bumps a word in a shared page and
/// `FUTEX_WAKE`s, the other leaves `FUTEX_WAIT` and reads the clock. No segment, no
/// record, no ShmBus; what is left is what this machine charges for a cross-process
/// wake-up, measured in the same run as ShmBus's futex path.
extension BenchWorker {
    /// The shared page: the futex word (a count of wake-ups) at 0, then one
    /// CLOCK_REALTIME stamp per wake-up, wake-up `k` in slot `k % stampSlots`.
    private static let pageSize = 4096
    private static let stampSlots = (pageSize - 8) / 8

    /// Creates the page (a memfd), prints "ready PID FD" so the sender can open it
    /// through /proc, and records `count` wake-ups on a thread of its own: for each, the
    /// time from its stamp to this thread running. A wake-up that finds this thread
    /// late finds earlier ones not yet seen too; each gets its own sample, so the slow
    /// ones are counted, not dropped.
    func bareFutexReceiver() async throws {
        let fd = try Memfd.create(name: "shmbus-bench-futex", size: Self.pageSize)
        Output.line("ready \(getpid()) \(fd.rawValue)")
        let count = self.count
        let latencies = try await onThread {
            let page = try Self.map(fd.rawValue, what: "the bare futex page")
            defer { munmap(page, Self.pageSize) }
            let word = page.assumingMemoryBound(to: UInt32.self)
            let stamps = (page + 8).assumingMemoryBound(to: UInt64.self)
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            // A new memfd reads as zeros: the sender's first bump makes the word 1, even
            // if it comes before this thread first looks.
            var seen: UInt32 = 0
            while seen < UInt32(count) {
                // Bounded, so that a sender that died does not hang the run; generous,
                // because the first wait also covers the sender's start-up.
                let result = try Futex.wait(on: word, expecting: seen, timeout: .seconds(60))
                // The word first, then the clock: every stamp up to `current` was
                // stored before its bump, so none is later than `now`.
                let current = shmbus_load_acquire_u32(word)
                let now = RealtimeClock.now()
                if current == seen {
                    if result == .timedOut {
                        throw BenchWorkerFailure("the bare futex sender went quiet after \(seen) of \(count) wake-ups")
                    }
                    continue
                }
                guard current &- seen <= UInt32(Self.stampSlots) else {
                    throw BenchWorkerFailure("the receiver fell \(current &- seen) wake-ups behind; the page holds \(Self.stampSlots) stamps")
                }
                for k in (seen + 1)...current {
                    samples.append(now &- shmbus_load_acquire_u64(stamps + Int(k) % Self.stampSlots))
                }
                seen = current
            }
            return samples
        }
        try JSONOutput.print(latencies)
    }

    /// Opens the receiver's page (`--dest PID:FD`), then for each of `count` rounds at
    /// `rate` per second stores the time in the round's slot, bumps the word and wakes
    /// the receiver.
    func bareFutexSender() async throws {
        let parts = dest.split(separator: ":")
        guard parts.count == 2 else { throw ValidationError("--dest must be PID:FD") }
        let path = "/proc/\(parts[0])/fd/\(parts[1])"
        let fd = try UnixFileDescriptor.open(path, O_RDWR)
        let page = try Self.map(fd.rawValue, what: path)
        defer { munmap(page, Self.pageSize) }
        let word = page.assumingMemoryBound(to: UInt32.self)
        let stamps = (page + 8).assumingMemoryBound(to: UInt64.self)
        Output.line("ready")
        _ = readLine()
        let start = ContinuousClock.now
        for i in 0..<count {
            shmbus_store_release_u64(stamps + (i + 1) % Self.stampSlots, RealtimeClock.now())
            _ = shmbus_fetch_add_u32(word, 1)
            try Futex.wake(word, count: 1)
            try await Task.sleep(until: start + .nanoseconds(Int64(i + 1) * 1_000_000_000 / Int64(rate)))
        }
        Output.line("done")
        _ = readLine()
    }

    private static func map(_ fd: Int32, what: String) throws -> UnsafeMutableRawPointer {
        guard let page = mmap(nil, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), page != MAP_FAILED else {
            throw BenchWorkerFailure("mmap of \(what): \(String(cString: strerror(errno)))")
        }
        return page
    }
}

/// A bench worker's own failure (a system call, a peer that went quiet), with what it
/// was doing.
struct BenchWorkerFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
