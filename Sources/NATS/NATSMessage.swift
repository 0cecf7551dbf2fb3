import CNATS
import Glibc

/// A message received from JetStream (a fetched, or a stored one), owned: its
/// `natsMsg` is destroyed with it. Not `Sendable`: it belongs to the thread that
/// fetched it; ``data`` points into NATS.c's buffer and is valid while the message is.
public final class NATSMessage {
    let message: OpaquePointer

    init(owning message: OpaquePointer) {
        self.message = message
    }

    deinit {
        natsMsg_Destroy(message)
    }

    public var subject: String { String(cString: natsMsg_GetSubject(message)) }

    /// The message's data, without copying; valid while `self` is.
    public var data: UnsafeRawBufferPointer {
        let count = Int(natsMsg_GetDataLength(message))
        guard count > 0, let base = natsMsg_GetData(message) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base, count: count)
    }

    /// The first value of header `name`, nil if absent.
    public func header(_ name: String) -> String? {
        var value: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(message, name, &value) == NATS_OK, let value else { return nil }
        return String(cString: value)
    }

    /// Every header name and its first value.
    public var headers: [String: String] {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(message, &keys, &count) == NATS_OK, let keys else { return [:] }
        defer { free(keys) }
        var result: [String: String] = [:]
        for index in 0..<Int(count) {
            guard let key = keys[index] else { continue }
            let name = String(cString: key)
            result[name] = header(name)
        }
        return result
    }

    /// The stream sequence: for a stored message (``NATSConnection/lastMessage(stream:subject:)``)
    /// from the message itself, for a delivered one from its JetStream metadata.
    public var streamSequence: UInt64? {
        let stored = natsMsg_GetSequence(message)
        if stored > 0 { return stored }
        return deliveryMetadata?.streamSequence
    }

    /// For a message a consumer delivered: where it is in the stream and the consumer,
    /// and how often it was delivered.
    public struct DeliveryMetadata: Sendable, Hashable {
        public var streamSequence: UInt64
        public var consumerSequence: UInt64
        public var deliveries: UInt64
        public var pending: UInt64
    }

    public var deliveryMetadata: DeliveryMetadata? {
        var meta: UnsafeMutablePointer<jsMsgMetaData>?
        guard natsMsg_GetMetaData(&meta, message) == NATS_OK, let meta else { return nil }
        defer { jsMsgMetaData_Destroy(meta) }
        let m = meta.pointee
        return DeliveryMetadata(
            streamSequence: m.Sequence.Stream, consumerSequence: m.Sequence.Consumer, deliveries: m.NumDelivered,
            pending: m.NumPending)
    }

    /// Acknowledges the message and waits for the server to confirm it (with
    /// `AckPolicy` all, every earlier message of the consumer too).
    public func acknowledge() throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        try NATSError.check(natsMsg_AckSync(message, nil, &code), code, "acknowledging a message on '\(subject)'")
    }

    /// Tells the server to deliver the message again (now).
    public func reject() throws(NATSError) {
        try NATSError.check(natsMsg_Nak(message, nil), "rejecting a message on '\(subject)'")
    }
}
