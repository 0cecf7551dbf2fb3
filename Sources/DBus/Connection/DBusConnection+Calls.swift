extension DBusConnection {
    /// The default method-call timeout, libdbus's own default.
    public static let defaultTimeout: Duration = .seconds(25)

    /// Sends a method call and waits for its reply.
    ///
    /// - Parameter timeout: how long to wait; nil waits until the connection closes.
    /// - Returns: the `METHOD_RETURN` message.
    /// - Throws: the peer's error as ``DBusError`` (its name and message), a
    ///   `NoReply` ``DBusError`` on timeout, `Disconnected` when the connection closes,
    ///   and `CancellationError` when the calling task is cancelled (the reply, if it
    ///   still comes, is dropped).
    public func call(_ message: DBusMessage, timeout: Duration? = defaultTimeout) async throws -> DBusMessage {
        guard message.kind == .methodCall, !message.noReplyExpected else {
            throw DBusError.invalidArgument("call(_:) needs a method call that expects a reply")
        }
        let raw = try message.makeRaw()
        try checkUnixFDs(raw)
        let pending = PendingReply()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                pending.install(continuation)
                let queued = core.submit { loop in
                    // A call cancelled before it reached the loop is never sent.
                    guard pending.isWaiting else { return }
                    loop.sendCall(raw, timeout: timeout, handler: .task(pending))
                }
                if !queued { pending.complete(.failure(DBusError.disconnected())) }
            }
        } onCancel: {
            pending.cancel()
        }
    }

    /// Calls `method` and returns the reply's body.
    public func call(
        destination: String?, path: ObjectPath, interface: String?, method: String, _ arguments: [DBusValue] = [],
        timeout: Duration? = defaultTimeout
    ) async throws -> [DBusValue] {
        let message = try DBusMessage.methodCall(
            destination: destination, path: path, interface: interface, member: method, body: arguments)
        return try await call(message, timeout: timeout).body
    }

    /// `org.freedesktop.DBus.Peer.Ping` of `destination`: answered by its connection
    /// (libdbus, or this library's loop) without any handler of its objects, so it
    /// measures the way there and back through the bus alone.
    public func ping(_ destination: String, timeout: Duration? = defaultTimeout) async throws {
        _ = try await call(destination: destination, path: "/", interface: StandardInterfaces.peerName, method: "Ping", timeout: timeout)
    }
}
