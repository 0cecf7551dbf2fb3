import ArgumentParser
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem

/// The floor of the spin path: one process spins on a word in a shared page, the other
/// stores its clock into a slot and bumps the word. No segment, no record, no futex, no
/// ShmBus; what is left is what this machine charges for a cache line to cross from one
/// core to another (when both processes have a core), measured in the same run as
/// ShmBus's `Wait.spin`.
extension BenchWorker {
    /// The page: the word (a count of hand-offs, u64) at 0, then one CLOCK_REALTIME
    /// stamp per hand-off, hand-off `k` in slot `k % stampSlots`.
    private static let spinPageSize = 4096
    private static let spinStampSlots = (spinPageSize - 8) / 8

    /// Creates the page, prints "ready PID FD", and spins on a thread of its own until
    /// `count` hand-offs came: for each, the time from its stamp to this thread seeing
    /// the word move. Prints the nanoseconds as a JSON array, then "cpu NS WALL_NS": the
    /// spinning thread's CPU time and the wall time from the first hand-off to the last.
    func bareSpinReceiver() async throws {
        let fd = try Memfd.create(name: "shmbus-bench-spin", size: Self.spinPageSize)
        Output.line("ready \(getpid()) \(fd.rawValue)")
        let count = self.count
        let (latencies, cpu) = try await onThread { () throws -> ([UInt64], ThreadCPU.Span) in
            let page = try Self.mapSpinPage(fd.rawValue, what: "the bare spin page")
            defer { munmap(page, Self.spinPageSize) }
            let word = page.assumingMemoryBound(to: UInt64.self)
            let stamps = (page + 8).assumingMemoryBound(to: UInt64.self)
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            var span = ThreadCPU.Span()
            var seen: UInt64 = 0
            // Bounded, so that a sender that died does not hang the run.
            var quietSince = BenchClock.now()
            while seen < UInt64(count) {
                let current = shmbus_spin_while_equal_u64(word, seen, 256)
                let now = RealtimeClock.now()
                if current == seen {
                    if BenchClock.now() - quietSince > 60_000_000_000 {
                        throw BenchWorkerFailure("the bare spin sender went quiet after \(seen) of \(count) hand-offs")
                    }
                    continue
                }
                guard current &- seen <= UInt64(Self.spinStampSlots) else {
                    throw BenchWorkerFailure("the spinner fell \(current &- seen) hand-offs behind; the page holds \(Self.spinStampSlots) stamps")
                }
                for k in (seen + 1)...current {
                    samples.append(now &- shmbus_load_acquire_u64(stamps + Int(k % UInt64(Self.spinStampSlots))))
                }
                if seen == 0 { span.start() }
                seen = current
                quietSince = BenchClock.now()
            }
            span.stop()
            return (samples, span)
        }
        try JSONOutput.print(latencies)
        Output.line(cpu.line)
    }

    /// Opens the receiver's page (`--dest PID:FD`), then for each of `count` rounds at
    /// `rate` per second stores the time in the round's slot and bumps the word.
    func bareSpinSender() async throws {
        let parts = dest.split(separator: ":")
        guard parts.count == 2 else { throw ValidationError("--dest must be PID:FD") }
        let path = "/proc/\(parts[0])/fd/\(parts[1])"
        let fd = try UnixFileDescriptor.open(path, O_RDWR)
        let page = try Self.mapSpinPage(fd.rawValue, what: path)
        defer { munmap(page, Self.spinPageSize) }
        let word = page.assumingMemoryBound(to: UInt64.self)
        let stamps = (page + 8).assumingMemoryBound(to: UInt64.self)
        Output.line("ready")
        _ = readLine()
        let start = ContinuousClock.now
        for i in 0..<count {
            let k = UInt64(i + 1)
            shmbus_store_release_u64(stamps + Int(k % UInt64(Self.spinStampSlots)), RealtimeClock.now())
            shmbus_store_release_u64(word, k)
            try await Task.sleep(until: start + .nanoseconds(Int64(i + 1) * 1_000_000_000 / Int64(rate)))
        }
        Output.line("done")
        _ = readLine()
    }

    private static func mapSpinPage(_ fd: Int32, what: String) throws -> UnsafeMutableRawPointer {
        guard let page = mmap(nil, spinPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), page != MAP_FAILED else {
            throw BenchWorkerFailure("mmap of \(what): \(String(cString: strerror(errno)))")
        }
        return page
    }
}

/// The CPU time of the calling thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`): what
/// a waiting thread burns, beside the wall time it waited.
enum ThreadCPU {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// CPU and wall time between `start()` and `stop()`, both on one thread.
    struct Span: Sendable {
        var cpuStart: UInt64 = 0, wallStart: UInt64 = 0
        var cpu: UInt64 = 0, wall: UInt64 = 0

        mutating func start() {
            cpuStart = ThreadCPU.now()
            wallStart = BenchClock.now()
        }

        mutating func stop() {
            guard wallStart != 0 else { return }
            cpu = ThreadCPU.now() &- cpuStart
            wall = BenchClock.now() &- wallStart
        }

        /// "cpu NS WALL_NS", the line the bench reads after the latencies.
        var line: String { "cpu \(cpu) \(wall)" }
    }
}
