import DBus
import SharedSegments

/// Iteration: chunks already committed are handed out without an executor hop, a
/// retired segment is followed, and the iterator sleeps only when nothing is left.
extension Subscriber {
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscriber: Subscriber
        var wakeups: AsyncStream<Void>.AsyncIterator
        /// Events read ahead under one lock, handed out one by one.
        var batch: [Event] = []
        var batchIndex = 0
        /// Set after ``Event/publisherLeft(owner:)`` with ``Options/endWhenPublisherLeaves``.
        var ended = false
        /// A read has begun since the publisher's departure was seen (see
        /// ``Subscriber/departure(readSinceSeen:)``).
        var readSinceDeparture = false

        /// Runs on the caller's executor (SE-0421): a chunk that is already committed
        /// costs no executor hop.
        /// Throws only ``ShmBusError``; a cancelled task ends the iteration (nil).
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> Event? {
            if batchIndex < batch.count {
                defer { batchIndex += 1 }
                return batch[batchIndex]
            }
            do {
                return try await nextEvent(isolation: actor)
            } catch is CancellationError {
                return nil
            } catch {
                // After ``Subscriber/cancel()`` the iteration ends: a call that was on
                // its way (following a segment, asking the registry) fails because
                // cancel closed the connection under it, and that is no error of the
                // subscription's.
                if subscriber.wakeIsFinished { return nil }
                throw ShmBusError.wrapping(error) ?? ShmBusError(.bus, "\(error)")
            }
        }

        public mutating func next() async throws -> Event? {
            try await next(isolation: nil)
        }

        mutating func nextEvent(isolation actor: isolated (any Actor)?) async throws -> Event? {
            while !Task.isCancelled, !ended {
                switch try subscriber.read(upTo: 256) {
                case .events(let events):
                    batch = events
                    batchIndex = 1
                    return events[0]
                case .retired(let successor):
                    try await subscriber.follow(successor)
                case .nothing:
                    if try await subscriber.moveIfChannelMoved() { continue }
                    // Everything its publisher committed was read: now say it left.
                    if let owner = subscriber.departure(readSinceSeen: &readSinceDeparture) {
                        ended = subscriber.options.endWhenPublisherLeaves
                        return .publisherLeft(owner: owner)
                    }
                    if readSinceDeparture { continue }
                    guard try await waitForData(isolation: actor) else { return nil }
                }
            }
            return nil
        }

        /// Waits for a wake-up; false when the subscription ended.
        private mutating func waitForData(isolation actor: isolated (any Actor)?) async throws -> Bool {
            if let waiter = subscriber.futexWaiter {
                let subscriber = self.subscriber
                await waiter.run { subscriber.waitOnDoorbell(timeout: .milliseconds(500)) }
                // Ended by the task's cancellation or by ``Subscriber/cancel()`` (which
                // finishes the wake-up stream the bus path waits on, not the futex).
                return !Task.isCancelled && !subscriber.wakeIsFinished
            }
            if subscriber.expectSignal() { return true }
            return await wakeups.next(isolation: actor) != nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(subscriber: self, wakeups: wakeups.makeAsyncIterator())
    }

    /// The chunks only, gaps dropped.
    public var chunks: AsyncCompactMapSequence<Subscriber, Chunk> {
        compactMap { event in
            if case .chunk(let chunk) = event { return chunk }
            return nil
        }
    }
}
