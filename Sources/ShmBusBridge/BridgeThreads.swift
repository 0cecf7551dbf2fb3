import Dispatch
import Foundation
import Synchronization

/// The bridge's threads: NATS.c's calls block, so the bridge makes them on threads of
/// its own (one per exported channel, one per import), never on the concurrency pool
/// (docs/BRIDGE.md, "Threads").
final class BridgeThreads: Sendable {
    private let stopping = Atomic(false)
    private let running = Mutex(0)
    private let done = DispatchSemaphore(value: 0)

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Runs `body` on a new thread.
    func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        running.withLock { $0 += 1 }
        let thread = Thread {
            body()
            let left = self.running.withLock { count in
                count -= 1
                return count
            }
            if left == 0 { self.done.signal() }
        }
        thread.name = name
        thread.start()
    }

    /// Asks every thread to stop, without waiting.
    func requestStop() {
        stopping.store(true, ordering: .releasing)
    }

    /// Asks every thread to stop and waits for them, on a thread of its own.
    func stop() async {
        requestStop()
        guard running.withLock({ $0 }) > 0 else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                self.done.wait()
                continuation.resume()
            }.start()
        }
    }

    /// Sleeps up to `duration`, less if the bridge stops meanwhile.
    func pause(_ duration: Duration) {
        let deadline = ContinuousClock.now + duration
        while !isStopping, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
    }
}

/// Waits, on one of the bridge's own threads, for async work (opening a publisher or a
/// subscriber on the bus). Never call it from a task: it blocks the calling thread.
func awaitOnBridgeThread<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let finished = DispatchSemaphore(value: 0)
    let result = Mutex<Result<T, any Error>?>(nil)
    Task {
        let outcome = await Result(catching: { try await body() })
        result.withLock { $0 = outcome }
        finished.signal()
    }
    finished.wait()
    guard let outcome = result.withLock({ $0 }) else { throw BridgeError.invalidArgument("async work ended without a result") }
    return try outcome.get()
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
