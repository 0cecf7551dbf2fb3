import CShmBusLinux
import Foundation
import Glibc
import ShmBusSystem
import Testing

/// eventfd and futex: the two ways one thread or process wakes another.
@Suite struct WakeUpTests {
    @Test func anEventCounterIsReadableUntilDrained() throws {
        let counter = try EventCounter()
        func readable() -> Bool {
            var set = pollfd(fd: counter.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
            return poll(&set, 1, 0) == 1
        }
        #expect(!readable())
        #expect(counter.drain() == 0, "non-blocking: an empty counter reads nothing")
        counter.signal()
        counter.signal()
        #expect(readable())
        #expect(counter.drain() == 2)
        #expect(!readable())
        #expect(fcntl(counter.fileDescriptor.rawValue, F_GETFL) & O_NONBLOCK != 0)
    }

    @Test func futexWaitReportsAChangedValueAndATimeout() throws {
        var word: UInt32 = 1
        #expect(try Futex.wait(on: &word, expecting: 0, timeout: .seconds(1)) == .valueChanged)
        let start = ContinuousClock.now
        #expect(try Futex.wait(on: &word, expecting: 1, timeout: .milliseconds(20)) == .timedOut)
        #expect(ContinuousClock.now - start >= .milliseconds(15))
        #expect(try Futex.wake(&word) == 0, "nobody waits")
    }

    /// A waiter on one mapping of a memfd is woken through another mapping of it (at
    /// another address): the futex is shared, not process-private.
    @Test func aWakeThroughOneMappingWakesAWaiterOnAnother() async throws {
        let fd = try UnixFileDescriptor.memfd(name: "shmbus-futex-test")
        try fd.truncate(to: 4096)
        let first = try #require(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0))
        let second = try #require(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0))
        defer { munmap(first, 4096); munmap(second, 4096) }
        #expect(first != second)
        let waiterAddress = UInt(bitPattern: first)
        let wakerAddress = UInt(bitPattern: second)

        // How many waiters the waker's wake woke, and how each of the waiter's waits
        // ended (the body below runs to its end before the await returns).
        var woken = 0
        let outcomes = await withCheckedContinuation { (continuation: CheckedContinuation<[Futex.WaitResult], Never>) in
            let waiter = Thread {
                let word = UnsafeMutablePointer<UInt32>(bitPattern: waiterAddress)!
                var outcomes: [Futex.WaitResult] = []
                // Spurious wake-ups are allowed; wait until the word changes. (A wait
                // begun just after the waker stored 1 ends with valueChanged: only a
                // wake that woke someone proves the futex is shared, not the last
                // outcome.)
                while shmbus_load_acquire_u32(word) == 0 {
                    guard let outcome = try? Futex.wait(on: word, expecting: 0, timeout: .seconds(60)) else { break }
                    outcomes.append(outcome)
                    if outcome == .timedOut { break }
                }
                continuation.resume(returning: outcomes)
            }
            waiter.start()
            // Wake only once the waiter sleeps, so that the wake is what ends the wait:
            // a wake that woke someone proves it slept (storing first, as before, let a
            // slowly started waiter see the new value and never sleep at all). Then the
            // value changes and a second wake ends the wait for good. The deadline only
            // keeps a broken futex from hanging the test: a waiter thread started on a
            // loaded machine may take seconds to run.
            let word = UnsafeMutablePointer<UInt32>(bitPattern: wakerAddress)!
            let deadline = ContinuousClock.now + .seconds(60)
            while woken == 0 && ContinuousClock.now < deadline {
                usleep(1000)
                woken = (try? Futex.wake(word)) ?? 0
            }
            shmbus_store_release_u32(word, 1)
            _ = try? Futex.wake(word)
        }
        #expect(woken == 1, "a wake through the second mapping woke the waiter on the first")
        #expect(outcomes.contains(.woken), "\(outcomes)")
        #expect(!outcomes.contains(.timedOut), "\(outcomes)")
        #expect(first.load(as: UInt32.self) == 1)
    }
}
