import CNATS

/// A failed NATS.c call: its `natsStatus`, JetStream's error code when the server gave
/// one, what the Swift layer was doing, and NATS.c's own last-error text for the
/// calling thread (which often names the server's reason).
public struct NATSError: Error, Sendable, CustomStringConvertible {
    /// The `natsStatus` value (`NATS_TIMEOUT`, `NATS_NOT_FOUND`, …).
    public let status: UInt32
    /// JetStream's `jsErrCode` (`10059` stream not found, …); 0 when there is none.
    public let jetStreamCode: Int
    /// What was being done: `publishing to 'shmbus.S.…'`.
    public let context: String
    /// `natsStatus_GetText` of `status`, and NATS.c's last error text when it has one.
    public let detail: String

    init(_ status: natsStatus, jetStreamCode: jsErrCode = jsErrCode(rawValue: 0), context: String) {
        self.status = status.rawValue
        self.jetStreamCode = Int(jetStreamCode.rawValue)
        self.context = context
        var text = String(cString: natsStatus_GetText(status))
        var last = NATS_OK
        if let message = nats_GetLastError(&last), last == status {
            var message = Substring(String(cString: message))
            // NATS.c starts it with its source position, "(conn.c:1905): ", which
            // tells a user nothing.
            if message.hasPrefix("("), let close = message.firstIndex(of: ")"),
                message[close...].hasPrefix("): ")
            {
                message = message[message.index(close, offsetBy: 3)...]
            }
            if !message.isEmpty, message != text { text += ": " + message }
        }
        self.detail = text
    }

    /// An error the Swift layer finds itself (a bad argument, an answer it cannot use).
    init(invalid context: String) {
        status = NATS_INVALID_ARG.rawValue
        jetStreamCode = 0
        self.context = context
        detail = "invalid argument"
    }

    public var isTimeout: Bool { status == NATS_TIMEOUT.rawValue }

    /// Whether the server refused this client, as it will again until the client's
    /// configuration changes: an authorization violation (bad token, user, password or
    /// credentials), a TLS handshake that failed (an untrusted certificate), or one side
    /// requiring TLS the other does not speak. An unreachable server is not a refusal.
    public var isRefusal: Bool {
        [NATS_CONNECTION_AUTH_FAILED, NATS_NOT_PERMITTED, NATS_SSL_ERROR, NATS_SECURE_CONNECTION_WANTED,
         NATS_SECURE_CONNECTION_REQUIRED].contains { $0.rawValue == status }
    }
    public var isNotFound: Bool { status == NATS_NOT_FOUND.rawValue || jetStreamCode == 10037 || jetStreamCode == 10014 }

    public var description: String {
        "\(context): \(detail)" + (jetStreamCode != 0 ? " (JetStream error \(jetStreamCode))" : "")
    }

    /// Throws unless `status` is `NATS_OK`.
    static func check(_ status: natsStatus, _ context: @autoclosure () -> String) throws(NATSError) {
        if status != NATS_OK { throw NATSError(status, context: context()) }
    }

    /// Throws unless `status` is `NATS_OK`, with JetStream's error `code`.
    static func check(_ status: natsStatus, _ code: jsErrCode, _ context: @autoclosure () -> String) throws(NATSError) {
        if status != NATS_OK { throw NATSError(status, jetStreamCode: code, context: context()) }
    }
}
