import CNATS

/// The stream's acknowledgement of a published message.
public struct PublishAcknowledgement: Sendable, Hashable {
    public var stream: String
    /// The message's sequence in the stream (the earlier one's, for a duplicate).
    public var sequence: UInt64
    /// The stream already had a message with this `Nats-Msg-Id` and dropped this one.
    public var duplicate: Bool
}

extension NATSConnection {
    /// Publishes `data` with `headers` on `subject` to JetStream and waits for the
    /// stream's acknowledgement: when this returns, the message is stored (on a quorum
    /// of a replicated stream's nodes). `messageID` is sent as `Nats-Msg-Id`, which the
    /// stream uses to drop a repeated message. NATS.c copies `data` into the message.
    public func publish(
        subject: String, headers: [(name: String, value: String)], data: UnsafeRawBufferPointer, messageID: String? = nil,
        expectedStream: String? = nil
    ) throws(NATSError) -> PublishAcknowledgement {
        guard data.count <= Int(Int32.max) else { throw NATSError(invalid: "a message of \(data.count) bytes is too large") }
        var made: OpaquePointer?
        try NATSError.check(
            natsMsg_Create(&made, subject, nil, data.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(data.count)),
            "making a message for '\(subject)'")
        guard let message = made else { throw NATSError(invalid: "natsMsg_Create gave no message") }
        defer { natsMsg_Destroy(message) }
        for (name, value) in headers {
            try NATSError.check(natsMsgHeader_Set(message, name, value), "setting header \(name) on '\(subject)'")
        }
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.MaxWait = requestWait
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(rawValue: 0)
        let status = withOptionalCString(messageID) { id in
            withOptionalCString(expectedStream) { stream in
                options.MsgId = id
                options.ExpectStream = stream
                return js_PublishMsg(&ack, jetStream, message, &options, &code)
            }
        }
        try NATSError.check(status, code, "publishing to '\(subject)'")
        guard let ack else { throw NATSError(invalid: "the stream gave no acknowledgement for '\(subject)'") }
        defer { jsPubAck_Destroy(ack) }
        return PublishAcknowledgement(
            stream: ack.pointee.Stream.map { String(cString: $0) } ?? "", sequence: ack.pointee.Sequence,
            duplicate: ack.pointee.Duplicate)
    }
}

func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
