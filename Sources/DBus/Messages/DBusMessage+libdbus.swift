import CDBus

/// An owned reference to a libdbus `DBusMessage`, handed from the thread that built it
/// to the connection's loop thread.
///
/// `@unchecked Sendable` is safe because ownership moves with the value: the builder
/// never touches the message after handing it over, and libdbus's message reference
/// count is atomic.
final class RawMessage: @unchecked Sendable {
    let pointer: OpaquePointer
    let unixFDCount: Int
    /// About the bytes it takes on the wire: its body and a typical header.
    let approximateSize: Int

    init(taking pointer: OpaquePointer, unixFDCount: Int, bodySize: Int = 0) {
        self.pointer = pointer
        self.unixFDCount = unixFDCount
        approximateSize = bodySize + 128
    }

    deinit {
        dbus_message_unref(pointer)
    }
}

extension DBusMessage {
    /// Builds the libdbus message (`dbus_message_new`, setters, iterators), after
    /// validating every value and checking the protocol limits.
    func makeRaw() throws(DBusError) -> RawMessage {
        let plan = try DBusValue.plan(body: body)
        guard let pointer = dbus_message_new(Int32(kind.rawValue)) else {
            throw .failed("libdbus could not allocate a message")
        }
        let raw = RawMessage(taking: pointer, unixFDCount: plan.unixFDs, bodySize: plan.size)
        func set(_ value: String?, _ setter: (OpaquePointer?, UnsafePointer<CChar>?) -> dbus_bool_t) throws(DBusError) {
            guard let value else { return }
            guard value.withCString({ setter(pointer, $0) }) != 0 else { throw .failed("libdbus ran out of memory") }
        }
        // Names were validated when they were set through the public constructors, but
        // the fields are public and mutable: validate again before libdbus sees them.
        if let destination { try DBusName.validateBusName(destination) }
        if let interface { try DBusName.validateInterface(interface) }
        if let member { try DBusName.validateMember(member) }
        if let errorName { try DBusName.validateErrorName(errorName) }
        switch kind {
        case .methodCall, .signal:
            guard path != nil, member != nil else { throw .invalidArgument("\(kind) needs a path and a member") }
            if kind == .signal, interface == nil { throw .invalidArgument("a signal needs an interface") }
        case .methodReturn, .error:
            guard replySerial != 0 else { throw .invalidArgument("\(kind) needs the serial of the call it answers") }
            if kind == .error, errorName == nil { throw .invalidArgument("an error needs an error name") }
        }
        try set(destination, dbus_message_set_destination)
        try set(path?.rawValue, dbus_message_set_path)
        try set(interface, dbus_message_set_interface)
        try set(member, dbus_message_set_member)
        try set(errorName, dbus_message_set_error_name)
        if replySerial != 0, dbus_message_set_reply_serial(pointer, replySerial) == 0 {
            throw .failed("libdbus ran out of memory")
        }
        if kind == .methodCall {
            dbus_message_set_no_reply(pointer, noReplyExpected ? 1 : 0)
            dbus_message_set_auto_start(pointer, autoStart ? 1 : 0)
        } else {
            dbus_message_set_no_reply(pointer, 1)
        }
        try DBusValue.append(body, to: pointer)
        return raw
    }

    /// Reads a message libdbus received (headers and body). The message stays owned by
    /// the caller.
    init(reading pointer: OpaquePointer) throws(DBusError) {
        let type = dbus_message_get_type(pointer)
        guard let kind = Kind(rawValue: UInt8(clamping: type)) else {
            throw .invalidArgument("unknown message type \(type)")
        }
        let (_, body) = try DBusValue.readBody(of: pointer)
        self.init(kind: kind, body: body)
        func string(_ getter: (OpaquePointer?) -> UnsafePointer<CChar>?) -> String? {
            getter(pointer).map { String(cString: $0) }
        }
        serial = dbus_message_get_serial(pointer)
        replySerial = dbus_message_get_reply_serial(pointer)
        sender = string(dbus_message_get_sender)
        destination = string(dbus_message_get_destination)
        path = string(dbus_message_get_path).flatMap { ObjectPath(rawValue: $0) }
        interface = string(dbus_message_get_interface)
        member = string(dbus_message_get_member)
        errorName = string(dbus_message_get_error_name)
        noReplyExpected = dbus_message_get_no_reply(pointer) != 0
        autoStart = dbus_message_get_auto_start(pointer) != 0
    }
}
