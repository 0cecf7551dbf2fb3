import ArgumentParser
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBus

/// The floor of the futex path: one process bumps a word in a shared page and
/// `FUTEX_WAKE`s, the other leaves `FUTEX_WAIT` and reads the clock. No segment, no
/// record, no ShmBus; what is left is what this machine charges for a cross-process
/// wake-up, measured in the same run as ShmBus's futex path.
extension BenchWorker {
    /// The shared page: the futex word at 0, the sender's CLOCK_REALTIME stamp at 8.
    private static let pageSize = 4096

    /// Creates the page (a memfd), prints "ready PID FD" so the sender can open it
    /// through /proc, and records `count` wake-ups on a thread of its own.
    func bareFutexReceiver() async throws {
        let fd = try Memfd.create(name: "shmbus-bench-futex", size: Self.pageSize)
        defer { try? fd.close() }
        Output.line("ready \(getpid()) \(fd.rawValue)")
        let count = self.count
        let latencies = try await onThread {
            let page = try Self.map(fd.rawValue)
            defer { munmap(page, Self.pageSize) }
            let word = page.assumingMemoryBound(to: UInt32.self)
            let stamp = (page + 8).assumingMemoryBound(to: UInt64.self)
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            // The word counts the sender's wake-ups. A new memfd reads as zeros, so the
            // first bump makes it 1 even if it comes before this thread first looks; two
            // bumps seen at once (this thread was late) give one sample, for the latest.
            var seen: UInt32 = 0
            while seen < UInt32(count) {
                // A bounded wait, so a sender that died does not hang the run.
                let result = shmbus_futex_wait(word, seen, 1_000_000_000)
                let now = RealtimeClock.now()
                let current = shmbus_load_acquire_u32(word)
                if current != seen {
                    seen = current
                    samples.append(now &- shmbus_load_acquire_u64(stamp))
                } else if result != 0 && errno == ETIMEDOUT {
                    throw ShmBusError(.bus, "the bare futex sender went quiet after \(seen) wake-ups")
                }
            }
            return samples
        }
        try JSONOutput.print(latencies)
    }

    /// Opens the receiver's page (`--dest PID:FD`), then for each of `count` rounds at
    /// `rate` per second stores the time, bumps the word and wakes the receiver.
    func bareFutexSender() async throws {
        let parts = dest.split(separator: ":")
        guard parts.count == 2 else { throw ValidationError("--dest must be PID:FD") }
        let fd = open("/proc/\(parts[0])/fd/\(parts[1])", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw ShmBusError(.bus, "opening the receiver's page: errno \(errno)") }
        defer { close(fd) }
        let page = try Self.map(fd)
        defer { munmap(page, Self.pageSize) }
        let word = page.assumingMemoryBound(to: UInt32.self)
        let stamp = (page + 8).assumingMemoryBound(to: UInt64.self)
        Output.line("ready")
        _ = readLine()
        let start = ContinuousClock.now
        for i in 0..<count {
            shmbus_store_release_u64(stamp, RealtimeClock.now())
            _ = shmbus_fetch_add_u32(word, 1)
            _ = shmbus_futex_wake(word, 1)
            try await Task.sleep(until: start + .nanoseconds(Int64(i + 1) * 1_000_000_000 / Int64(rate)))
        }
        Output.line("done")
        _ = readLine()
    }

    private static func map(_ fd: Int32) throws -> UnsafeMutableRawPointer {
        guard let page = mmap(nil, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), page != MAP_FAILED else {
            throw ShmBusError(.bus, "mmap of the bare futex page: errno \(errno)")
        }
        return page
    }
}
