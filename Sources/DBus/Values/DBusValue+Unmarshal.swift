import CDBus
import Glibc

/// Reading values out of a libdbus message, guided by the message's signature.
///
/// libdbus has validated the whole message before handing it out, so the values
/// match the signature; every read still checks the type code it gets and fails
/// with an error rather than assuming.
extension DBusValue {
    /// Reads the whole body of `message`. Unix fds are duplicated by libdbus for the
    /// reader and owned by the returned ``UnixFileDescriptor`` values.
    static func readBody(of message: OpaquePointer) throws(DBusError) -> (DBusSignature, [DBusValue]) {
        let signatureText = dbus_message_get_signature(message).map { String(cString: $0) } ?? ""
        let signature = try DBusSignature(validating: signatureText)
        var values: [DBusValue] = []
        values.reserveCapacity(signature.types.count)
        var iter = DBusMessageIter()
        guard dbus_message_iter_init(message, &iter) != 0 else {
            guard signature.types.isEmpty else { throw .invalidArgument("message body is empty but its signature is '\(signature)'") }
            return (signature, [])
        }
        for (i, type) in signature.types.enumerated() {
            values.append(try read(type, from: &iter))
            let more = dbus_message_iter_next(&iter) != 0
            if more != (i < signature.types.count - 1) {
                throw .invalidArgument("message body does not match its signature '\(signature)'")
            }
        }
        return (signature, values)
    }

    private static func expect(_ iter: inout DBusMessageIter, _ code: DBusTypeCode) throws(DBusError) {
        let actual = dbus_message_iter_get_arg_type(&iter)
        guard actual == code.cValue else {
            throw .invalidArgument("expected type code '\(Character(Unicode.Scalar(code.rawValue)))', found \(actual)")
        }
    }

    private static func basic<T>(_ iter: inout DBusMessageIter, _ code: DBusTypeCode, _ zero: T) throws(DBusError) -> T {
        try expect(&iter, code)
        var value = zero
        withUnsafeMutablePointer(to: &value) { dbus_message_iter_get_basic(&iter, $0) }
        return value
    }

    private static func string(_ iter: inout DBusMessageIter, _ code: DBusTypeCode) throws(DBusError) -> String {
        try expect(&iter, code)
        var pointer: UnsafePointer<CChar>? = nil
        withUnsafeMutablePointer(to: &pointer) { dbus_message_iter_get_basic(&iter, $0) }
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    /// Reads one value of `type` at the iterator's position.
    static func read(_ type: DBusType, from iter: inout DBusMessageIter) throws(DBusError) -> DBusValue {
        switch type {
        case .byte: return .byte(try basic(&iter, .byte, UInt8(0)))
        case .boolean: return .boolean(try basic(&iter, .boolean, dbus_bool_t(0)) != 0)
        case .int16: return .int16(try basic(&iter, .int16, Int16(0)))
        case .uint16: return .uint16(try basic(&iter, .uint16, UInt16(0)))
        case .int32: return .int32(try basic(&iter, .int32, Int32(0)))
        case .uint32: return .uint32(try basic(&iter, .uint32, UInt32(0)))
        case .int64: return .int64(try basic(&iter, .int64, Int64(0)))
        case .uint64: return .uint64(try basic(&iter, .uint64, UInt64(0)))
        case .double: return .double(try basic(&iter, .double, Double(0)))
        case .unixFD:
            // dbus_message_iter_get_basic dup()s the fd for us on every call: read it once.
            let fd = try basic(&iter, .unixFD, Int32(-1))
            guard fd >= 0 else {
                // The dup failed: either the message's own descriptor is bad, or this
                // process is out of descriptors, which is no fault of the message.
                let error = errno
                if error == EMFILE || error == ENFILE {
                    throw .limitsExceeded("no descriptor left to receive the message's file descriptor (errno \(error)); retry later")
                }
                throw .invalidArgument("message carries an invalid file descriptor")
            }
            return .unixFD(UnixFileDescriptor(taking: fd))
        case .string: return .string(try string(&iter, .string))
        case .objectPath:
            let raw = try string(&iter, .objectPath)
            return .objectPath(try ObjectPath(validating: raw))
        case .signature:
            return .signature(try DBusSignature(validating: try string(&iter, .signature)))
        case .variant:
            try expect(&iter, .variant)
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            guard let raw = dbus_message_iter_get_signature(&sub) else {
                throw .invalidArgument("variant without a signature")
            }
            let text = String(cString: raw)
            dbus_free(raw)
            guard let inner = try DBusSignature(validating: text).singleType else {
                throw .invalidArgument("variant signature '\(text)' is not one complete type")
            }
            return .variant(try read(inner, from: &sub))
        case .array(let element):
            try expect(&iter, .array)
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            if element == .byte {
                var pointer: UnsafeRawPointer? = nil
                var count: Int32 = 0
                withUnsafeMutablePointer(to: &pointer) { dbus_message_iter_get_fixed_array(&sub, $0, &count) }
                guard let pointer, count > 0 else { return .bytes([]) }
                return .bytes(Array(UnsafeRawBufferPointer(start: pointer, count: Int(count))))
            }
            var elements: [DBusValue] = []
            while dbus_message_iter_get_arg_type(&sub) != 0 {
                elements.append(try read(element, from: &sub))
                dbus_message_iter_next(&sub)
            }
            return .array(element, elements)
        case .dictionary(let keyType, let valueType):
            try expect(&iter, .array)
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            var entries: [DBusDictEntry] = []
            while dbus_message_iter_get_arg_type(&sub) != 0 {
                try expect(&sub, .dictEntry)
                var pair = DBusMessageIter()
                dbus_message_iter_recurse(&sub, &pair)
                let key = try read(keyType, from: &pair)
                guard dbus_message_iter_next(&pair) != 0 else { throw .invalidArgument("dict entry without a value") }
                let value = try read(valueType, from: &pair)
                entries.append(DBusDictEntry(key: key, value: value))
                dbus_message_iter_next(&sub)
            }
            return .dictionary(key: keyType, value: valueType, entries)
        case .structure(let fields):
            try expect(&iter, .struct)
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            var values: [DBusValue] = []
            values.reserveCapacity(fields.count)
            for (i, field) in fields.enumerated() {
                values.append(try read(field, from: &sub))
                if i < fields.count - 1, dbus_message_iter_next(&sub) == 0 {
                    throw .invalidArgument("struct has fewer fields than its signature")
                }
            }
            return .structure(values)
        }
    }
}
