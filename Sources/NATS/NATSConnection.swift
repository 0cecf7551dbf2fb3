import CNATS

/// One connection to a NATS server (or cluster) with its JetStream context, owned: made
/// by `init`, closed and destroyed once, by ``close()`` or when the last reference goes.
///
/// **Threads.** Every method is synchronous: it blocks the calling thread until the
/// server answers or the call's timeout passes, so call them from a thread of your own,
/// not from the Swift concurrency pool (two blocked pool threads stall every task on a
/// two-core machine). NATS.c runs threads of its own for the socket, the flusher and
/// reconnection; this layer installs no callback, so none of them ever runs Swift
/// code, and nothing here needs to hop between NATS.c's threads and Swift's.
///
/// `@unchecked Sendable`: NATS.c documents `natsConnection` and `jsCtx` as safe to use
/// from several threads at once (it locks inside); the two pointers are set once in
/// `init`, and destroyed only in `deinit`, when no other reference can be using them.
/// ``close()`` only closes the connection (NATS.c makes later calls fail with
/// `NATS_CONNECTION_CLOSED`), it frees nothing.
public final class NATSConnection: @unchecked Sendable {
    let connection: OpaquePointer
    let jetStream: OpaquePointer
    /// Milliseconds JetStream requests may take (``Options/requestTimeout``).
    let requestWait: Int64

    /// Connects to `options.servers` and opens JetStream on the connection.
    public init(options: Options) throws(NATSError) {
        let opts = try Self.makeOptions(options)
        defer { natsOptions_Destroy(opts) }
        var made: OpaquePointer?
        try NATSError.check(natsConnection_Connect(&made, opts), "connecting to \(options.servers)")
        guard let connection = made else { throw NATSError(invalid: "natsConnection_Connect gave no connection") }
        var jsOpts = jsOptions()
        jsOptions_Init(&jsOpts)
        jsOpts.Wait = options.requestTimeout.natsMilliseconds
        var context: OpaquePointer?
        let status = natsConnection_JetStream(&context, connection, &jsOpts)
        guard status == NATS_OK, let context else {
            natsConnection_Destroy(connection)
            throw NATSError(status, context: "opening JetStream on the connection to \(options.servers)")
        }
        self.connection = connection
        self.jetStream = context
        self.requestWait = jsOpts.Wait
    }

    deinit {
        jsCtx_Destroy(jetStream)
        natsConnection_Destroy(connection)
    }

    /// Closes the connection: pending calls fail, later ones fail at once. Idempotent.
    public func close() {
        natsConnection_Close(connection)
    }

    /// The largest message (data and headers) the connected server accepts.
    public var maxPayload: Int { Int(natsConnection_GetMaxPayload(connection)) }

    /// Whether the connection is up now (not reconnecting, not closed).
    public var isConnected: Bool { natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED }

    /// The URL of the server the connection is using now, if any.
    public var connectedURL: String? {
        var buffer = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK else { return nil }
        let url = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return url.isEmpty ? nil : url
    }

    /// Sends everything buffered and waits for the server's answer to a ping.
    public func flush(timeout: Duration = .seconds(10)) throws(NATSError) {
        try NATSError.check(natsConnection_FlushTimeout(connection, timeout.natsMilliseconds), "flushing the connection")
    }
}
