import CDBus

/// Writing values into a libdbus message. Callers run ``DBusValue/plan(body:)``
/// first: these functions assume validated values and only report libdbus's
/// out-of-memory failures.
extension DBusValue {
    /// Appends `values` as the body of `message` (`dbus_message_iter_init_append`).
    static func append(_ values: [DBusValue], to message: OpaquePointer) throws(DBusError) {
        var iter = DBusMessageIter()
        dbus_message_iter_init_append(message, &iter)
        for value in values {
            try value.append(to: &iter)
        }
    }

    private static let outOfMemory = DBusError(name: "org.freedesktop.DBus.Error.NoMemory", message: "libdbus ran out of memory")

    private static func check(_ ok: dbus_bool_t) throws(DBusError) {
        if ok == 0 { throw outOfMemory }
    }

    private static func appendBasic<T>(_ iter: inout DBusMessageIter, _ code: DBusTypeCode, _ value: T) throws(DBusError) {
        var copy = value
        let ok = withUnsafePointer(to: &copy) { dbus_message_iter_append_basic(&iter, code.cValue, $0) }
        try check(ok)
    }

    private static func appendString(_ iter: inout DBusMessageIter, _ code: DBusTypeCode, _ string: String) throws(DBusError) {
        let ok = string.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            return withUnsafePointer(to: &pointer) { dbus_message_iter_append_basic(&iter, code.cValue, $0) }
        }
        try check(ok)
    }

    /// Opens a container (`dbus_message_iter_open_container`), runs `body` on it and
    /// closes it; on failure the container is abandoned so the message stays consistent.
    private static func withContainer(
        _ iter: inout DBusMessageIter, _ code: DBusTypeCode, signature: String?,
        _ body: (inout DBusMessageIter) throws(DBusError) -> Void
    ) throws(DBusError) {
        var sub = DBusMessageIter()
        let opened: dbus_bool_t
        if let signature {
            opened = signature.withCString { dbus_message_iter_open_container(&iter, code.cValue, $0, &sub) }
        } else {
            opened = dbus_message_iter_open_container(&iter, code.cValue, nil, &sub)
        }
        try check(opened)
        do {
            try body(&sub)
        } catch {
            dbus_message_iter_abandon_container(&iter, &sub)
            throw error
        }
        try check(dbus_message_iter_close_container(&iter, &sub))
    }

    private func append(to iter: inout DBusMessageIter) throws(DBusError) {
        switch self {
        case .byte(let v): try Self.appendBasic(&iter, .byte, v)
        case .boolean(let v): try Self.appendBasic(&iter, .boolean, dbus_bool_t(v ? 1 : 0))
        case .int16(let v): try Self.appendBasic(&iter, .int16, v)
        case .uint16(let v): try Self.appendBasic(&iter, .uint16, v)
        case .int32(let v): try Self.appendBasic(&iter, .int32, v)
        case .uint32(let v): try Self.appendBasic(&iter, .uint32, v)
        case .int64(let v): try Self.appendBasic(&iter, .int64, v)
        case .uint64(let v): try Self.appendBasic(&iter, .uint64, v)
        case .double(let v): try Self.appendBasic(&iter, .double, v)
        // libdbus duplicates the descriptor into the message.
        case .unixFD(let fd): try Self.appendBasic(&iter, .unixFD, fd.rawValue)
        case .string(let v): try Self.appendString(&iter, .string, v)
        case .objectPath(let v): try Self.appendString(&iter, .objectPath, v.rawValue)
        case .signature(let v): try Self.appendString(&iter, .signature, v.rawValue)
        case .variant(let inner):
            try Self.withContainer(&iter, .variant, signature: inner.type.signature) { (sub) throws(DBusError) in
                try inner.append(to: &sub)
            }
        case .bytes(let bytes):
            try Self.withContainer(&iter, .array, signature: "y") { (sub) throws(DBusError) in
                let ok = bytes.withUnsafeBufferPointer { buffer in
                    var base: UnsafePointer<UInt8>? = buffer.baseAddress
                    return withUnsafePointer(to: &base) {
                        dbus_message_iter_append_fixed_array(&sub, DBusTypeCode.byte.cValue, $0, Int32(buffer.count))
                    }
                }
                try Self.check(ok)
            }
        case .array(let element, let elements):
            try Self.withContainer(&iter, .array, signature: element.signature) { (sub) throws(DBusError) in
                for value in elements { try value.append(to: &sub) }
            }
        case .dictionary(let key, let value, let entries):
            let entrySignature = "{" + key.signature + value.signature + "}"
            try Self.withContainer(&iter, .array, signature: entrySignature) { (sub) throws(DBusError) in
                for entry in entries {
                    try Self.withContainer(&sub, .dictEntry, signature: nil) { (pair) throws(DBusError) in
                        try entry.key.append(to: &pair)
                        try entry.value.append(to: &pair)
                    }
                }
            }
        case .structure(let fields):
            try Self.withContainer(&iter, .struct, signature: nil) { (sub) throws(DBusError) in
                for field in fields { try field.append(to: &sub) }
            }
        }
    }
}
