/// A D-Bus message: header fields plus a body of values.
///
/// Messages are plain values. The connection turns them into libdbus messages when
/// sending (after validating every name and value) and back into values when they
/// arrive.
public struct DBusMessage: Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable {
        case methodCall = 1
        case methodReturn = 2
        case error = 3
        case signal = 4
    }

    public var kind: Kind
    /// The serial the sender gave the message (0 until sent).
    public var serial: UInt32 = 0
    /// For replies and errors: the serial of the call answered.
    public var replySerial: UInt32 = 0
    /// The sender's unique name, as stamped by the bus (nil on peer-to-peer links).
    public var sender: String?
    public var destination: String?
    public var path: ObjectPath?
    public var interface: String?
    public var member: String?
    /// For errors: the error name.
    public var errorName: String?
    public var body: [DBusValue]
    /// For method calls: the caller does not want a reply.
    public var noReplyExpected = false
    /// For method calls: whether the bus may start (activate) the destination.
    public var autoStart = true

    init(kind: Kind, body: [DBusValue]) {
        self.kind = kind
        self.body = body
    }

    /// The body's signature.
    public var signature: DBusSignature { DBusSignature(body.map(\.type)) }

    /// A method call; names and path are validated here.
    public static func methodCall(
        destination: String?, path: ObjectPath, interface: String?, member: String, body: [DBusValue] = []
    ) throws(DBusError) -> DBusMessage {
        var message = DBusMessage(kind: .methodCall, body: body)
        if let destination { message.destination = try DBusName.validateBusName(destination) }
        message.path = path
        if let interface { message.interface = try DBusName.validateInterface(interface) }
        message.member = try DBusName.validateMember(member)
        return message
    }

    /// A signal; names and path are validated here.
    public static func signal(
        path: ObjectPath, interface: String, member: String, body: [DBusValue] = [], destination: String? = nil
    ) throws(DBusError) -> DBusMessage {
        var message = DBusMessage(kind: .signal, body: body)
        message.path = path
        message.interface = try DBusName.validateInterface(interface)
        message.member = try DBusName.validateMember(member)
        if let destination { message.destination = try DBusName.validateBusName(destination) }
        return message
    }

    /// The reply to this method call.
    public func methodReturn(_ body: [DBusValue] = []) -> DBusMessage {
        var reply = DBusMessage(kind: .methodReturn, body: body)
        reply.replySerial = serial
        reply.destination = sender
        return reply
    }

    /// An error reply to this method call.
    public func errorReply(_ error: DBusError) -> DBusMessage {
        var reply = DBusMessage(kind: .error, body: [.string(error.message)])
        reply.replySerial = serial
        reply.destination = sender
        reply.errorName = (try? DBusName.validateErrorName(error.name)) ?? DBusError.failedName
        return reply
    }

    /// For an error message: the error it carries (name, and the first string argument
    /// as message).
    public var error: DBusError? {
        guard kind == .error else { return nil }
        var text = ""
        if case .string(let s)? = body.first { text = s }
        return DBusError(name: errorName ?? DBusError.failedName, message: text)
    }

    public var description: String {
        var parts = ["\(kind)"]
        if serial != 0 { parts.append("serial=\(serial)") }
        if replySerial != 0 { parts.append("reply_serial=\(replySerial)") }
        if let sender { parts.append("sender=\(sender)") }
        if let destination { parts.append("destination=\(destination)") }
        if let path { parts.append("path=\(path)") }
        if let interface { parts.append("interface=\(interface)") }
        if let member { parts.append("member=\(member)") }
        if let errorName { parts.append("error=\(errorName)") }
        parts.append("signature='\(signature)'")
        return parts.joined(separator: " ")
    }
}
