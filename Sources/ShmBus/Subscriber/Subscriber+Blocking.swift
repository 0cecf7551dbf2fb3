import Dispatch
import Locking
import SharedSegments

/// Reading on a thread of the caller's own, without the concurrency pool.
extension Subscriber {
    /// Reads on the calling thread, calling `body` for each event until it returns
    /// false or the subscription is cancelled.
    ///
    /// For consumers that want the lowest latency on a thread of their own: with
    /// ``Wait/futex``, an event costs one futex wake-up from the publisher and no task
    /// switch; with ``Wait/spin(_:)``, one that comes within the budget costs no
    /// wake-up either. Blocks the calling thread between events, so never call it from a task
    /// of the concurrency pool. With ``Wait/bus`` it looks every millisecond.
    public func readBlocking(_ body: (Event) throws -> Bool) throws {
        do {
            try readEvents { event in
                do { return try body(event) } catch { throw BodyError(error: error) }
            }
        } catch let error as BodyError {
            throw error.error
        } catch {
            // Ended by ``cancel()``: what failed was a call on the connection it closed.
            if wakeIsFinished { return }
            throw error
        }
    }

    /// An error of the caller's body, told apart from the subscription's own.
    private struct BodyError: Error {
        let error: any Error
    }

    private func readEvents(_ body: (Event) throws -> Bool) throws {
        var readSinceDeparture = false
        while !wakeIsFinished {
            switch try read(upTo: 1) {
            case .events(let events):
                // One at a time, so that stopping loses nothing read ahead.
                if try !body(events[0]) { return }
            case .retired(let successor):
                try blocking { try await self.follow(successor) }
            case .nothing:
                if status.withLock({ $0.channelMayHaveMoved }) {
                    if try blocking({ try await self.moveIfChannelMoved() }) { continue }
                }
                if let owner = departure(readSinceSeen: &readSinceDeparture) {
                    if try !body(.publisherLeft(owner: owner)) || options.endWhenPublisherLeaves { return }
                    continue
                }
                if readSinceDeparture { continue }
                waitOnDoorbell(timeout: .milliseconds(200))
            }
        }
    }

    /// Runs `operation` as a task and blocks the calling thread until it is done.
    private func blocking<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Lock<Result<T, any Error>?>(nil)
        Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await operation()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        guard let outcome = result.withLock({ $0 }) else { throw CancellationError() }
        return try outcome.get()
    }
}
