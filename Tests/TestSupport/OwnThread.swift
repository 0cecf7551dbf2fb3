import Foundation

/// Runs CPU-bound test work on a thread of its own and awaits its result.
///
/// Swift Testing runs tests in parallel on the concurrency pool, which has one thread
/// per core (two on the CI machines). A test that computes for seconds on a pool thread
/// starves every other test's tasks, among them the ones measuring how fast the
/// registry reacts to a dead process; on a thread of its own it only takes its share
/// of the CPU.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}
