/// Iteration by the batch: the events read under one lock, handed over together.
///
/// `for try await event in subscriber` costs an async call per event, which for a
/// 64-byte chunk is most of reading it (perf of the 64-byte flood, 2026-12-02: the
/// task allocator, executor checks and task switches about a fifth of the reader's
/// time). `subscriber.batches` yields arrays of the same events in the same order,
/// as many as were committed (at most 256 at a time), so a reader that keeps up with
/// millions of chunks a second pays the async call once per array.
extension Subscriber {
    /// The same events as iterating the subscriber, in arrays of one or more.
    public var batches: Batches { Batches(subscriber: self) }

    public struct Batches: AsyncSequence, Sendable {
        public typealias Element = [Event]
        let subscriber: Subscriber

        public struct AsyncIterator: AsyncIteratorProtocol {
            var events: Subscriber.AsyncIterator

            /// The next events: the rest of what was read ahead, or the next read (after
            /// waiting for it, following segments and reporting departures as
            /// event-by-event iteration does). Nil when the subscription ended.
            public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> [Event]? {
                if events.batchIndex < events.batch.count {
                    defer { events.batchIndex = events.batch.count }
                    return events.batchIndex == 0 ? events.batch : Array(events.batch[events.batchIndex...])
                }
                // Emptied first, so that what `next` read ahead can be told from an event
                // of its own (a departure), which comes with nothing behind it.
                events.batch = []
                events.batchIndex = 0
                guard let first = try await events.next(isolation: actor) else { return nil }
                guard events.batchIndex == 1, !events.batch.isEmpty else { return [first] }
                events.batchIndex = events.batch.count
                return events.batch
            }

            public mutating func next() async throws -> [Event]? {
                try await next(isolation: nil)
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(events: subscriber.makeAsyncIterator())
        }
    }
}
