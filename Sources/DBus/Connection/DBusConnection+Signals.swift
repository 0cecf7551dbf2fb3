/// The signals that match one rule, as they arrive.
///
/// The rule is registered with the bus before ``DBusConnection/signals(matching:bufferingPolicy:)``
/// returns and removed when iteration ends (the loop finishes, the task is cancelled,
/// or the stream is dropped). The stream ends with `Disconnected` when the connection
/// closes.
public struct DBusSignalStream: AsyncSequence, Sendable {
    public typealias Element = DBusMessage
    let stream: AsyncThrowingStream<DBusMessage, any Error>

    public func makeAsyncIterator() -> AsyncThrowingStream<DBusMessage, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }
}

extension DBusConnection {
    /// Subscribes to the signals matching `rule` (`AddMatch`).
    ///
    /// Matching happens twice: the bus only routes matching messages to this
    /// connection, and the connection hands each stream only the messages its own rule
    /// matches (a connection with several rules receives the union). A `sender` that is
    /// a well-known name is matched against its current owner, followed through
    /// NameOwnerChanged as the bus does.
    public func signals(
        matching rule: MatchRule,
        bufferingPolicy: AsyncThrowingStream<DBusMessage, any Error>.Continuation.BufferingPolicy = .unbounded
    ) async throws -> DBusSignalStream {
        try rule.validate()
        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: DBusMessage.self, throwing: (any Error).self, bufferingPolicy: bufferingPolicy)
        let id = makeID()
        let core = self.core
        continuation.onTermination = { _ in
            core.submit { $0.unsubscribe(id: id) }
        }
        let sink = SignalSink(
            deliver: { continuation.yield($0) }, finish: { continuation.finish(throwing: $0) })
        try await subscribe(id: id, rule: rule, sink: sink)
        return DBusSignalStream(stream: stream)
    }

    /// Calls `handler` on the connection's loop thread for every signal matching
    /// `rule`, until the returned handle is cancelled or released.
    ///
    /// This is the lowest-latency way to react to a signal: no task is woken in
    /// between. `handler` must return quickly and must not block (it holds up every
    /// other message of the connection); typically it records something or resumes a
    /// waiting task.
    public func onSignal(
        matching rule: MatchRule, _ handler: @escaping @Sendable (DBusMessage) -> Void
    ) async throws -> DBusSignalHandler {
        try rule.validate()
        let id = makeID()
        try await subscribe(id: id, rule: rule, sink: SignalSink(deliver: handler, finish: { _ in }))
        return DBusSignalHandler(id: id, core: core)
    }

    private func subscribe(id: UInt64, rule: MatchRule, sink: SignalSink) async throws {
        let core = self.core
        try await withCheckedThrowingContinuation { (ready: CheckedContinuation<Void, any Error>) in
            let queued = core.submit { loop in
                loop.subscribe(id: id, rule: rule, sink: sink, ready: ready)
            }
            if !queued { ready.resume(throwing: DBusError.disconnected()) }
        }
    }
}

/// A signal handler installed with ``DBusConnection/onSignal(matching:_:)``; it stays
/// installed (and its match rule on the bus) while this handle lives.
public final class DBusSignalHandler: Sendable {
    private let id: UInt64
    private let core: LoopCore

    init(id: UInt64, core: LoopCore) {
        self.id = id
        self.core = core
    }

    /// Removes the handler and its match rule. Idempotent.
    public func cancel() {
        let id = self.id
        core.submit { $0.unsubscribe(id: id) }
    }

    deinit {
        cancel()
    }
}
