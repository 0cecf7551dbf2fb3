import Foundation
import Locking
import Synchronization

/// A thread that performs blocking waits (a futex on a writer's doorbell) for a task,
/// so that the waiting never blocks a thread of the Swift concurrency pool.
///
/// One long-lived thread per subscriber: handing a wait to it costs a semaphore post,
/// not a thread creation. The thread ends when the waiter is released.
final class FutexWaiter: Sendable {
    private final class Queue: Sendable {
        let jobs = Lock<[@Sendable () -> Void]>([])
        let available = DispatchSemaphore(value: 0)
        let stopped = Atomic(false)
    }

    private let queue = Queue()

    init() {
        let queue = self.queue
        let thread = Thread {
            while true {
                queue.available.wait()
                if queue.stopped.load(ordering: .acquiring) { return }
                let job = queue.jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "shmbus-futex-wait"
        thread.start()
    }

    /// Runs `wait` on the waiter thread and returns when it has returned.
    func run(_ wait: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            queue.jobs.withLock { $0.append { wait(); continuation.resume() } }
            queue.available.signal()
        }
    }

    deinit {
        queue.stopped.store(true, ordering: .releasing)
        queue.available.signal()
    }
}
