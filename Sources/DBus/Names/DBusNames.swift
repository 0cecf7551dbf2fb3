import CDBus

/// Checks that a string can be handed to libdbus as a C string: libdbus reads up to
/// the first NUL, so an embedded NUL would silently truncate what it validates.
@inline(__always)
func hasNoEmbeddedNUL(_ s: String) -> Bool {
    !s.utf8.contains(0)
}

/// Runs one of libdbus's `dbus_validate_*` functions. They never abort: unlike the
/// rest of libdbus they are meant for untrusted input.
func libdbusAccepts(
    _ s: String,
    _ validate: (UnsafePointer<CChar>?, UnsafeMutablePointer<CDBus.DBusError>?) -> dbus_bool_t
) -> Bool {
    guard hasNoEmbeddedNUL(s) else { return false }
    return s.withCString { validate($0, nil) } != 0
}

/// A D-Bus object path such as `/org/shmbus/Registry1`, validated on creation
/// (`dbus_validate_path`).
public struct ObjectPath: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    /// Validates `rawValue`; returns nil for anything libdbus would reject.
    public init?(rawValue: String) {
        guard libdbusAccepts(rawValue, dbus_validate_path) else { return nil }
        self.rawValue = rawValue
    }

    /// Validates `string`, throwing ``DBusError/invalidArgument(_:)`` naming the input.
    public init(validating string: String) throws(DBusError) {
        guard let path = ObjectPath(rawValue: string) else {
            throw .invalidArgument("'\(string.debugEscaped)' is not a valid D-Bus object path")
        }
        self = path
    }

    /// For literals in source code: an invalid literal is a programming error, so it
    /// stops here rather than reaching libdbus.
    public init(stringLiteral value: String) {
        guard let path = ObjectPath(rawValue: value) else {
            preconditionFailure("invalid object path literal '\(value)'")
        }
        self = path
    }

    public static let root = ObjectPath(unchecked: "/")

    init(unchecked: String) { self.rawValue = unchecked }

    public var description: String { rawValue }

    public static func < (lhs: ObjectPath, rhs: ObjectPath) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The path with `element` appended as one more component. `element` is escaped
    /// the way sd-bus does (`sd_bus_path_encode`): bytes outside `[A-Za-z0-9]` become
    /// `_XX` hex, so any string gives a valid, reversible path component.
    public func appending(escaped element: String) -> ObjectPath {
        let component = ObjectPath.escape(element)
        return ObjectPath(unchecked: rawValue == "/" ? "/" + component : rawValue + "/" + component)
    }

    /// Escapes an arbitrary string into one object-path component (sd-bus rules).
    public static func escape(_ s: String) -> String {
        if s.isEmpty { return "_" }
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for (i, b) in s.utf8.enumerated() {
            let isAlpha = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            let isDigit = b >= 0x30 && b <= 0x39
            if isAlpha || (isDigit && i > 0) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "_" + String(b >> 4, radix: 16) + String(b & 0xF, radix: 16)
            }
        }
        return out
    }

    /// Reverses ``escape(_:)``; nil when `component` is not an escaped string.
    public static func unescape(_ component: String) -> String? {
        if component == "_" { return "" }
        var bytes: [UInt8] = []
        var it = Array(component.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "_") {
                guard it.count >= 2, let hi = hexValue(it.removeFirst()), let lo = hexValue(it.removeFirst()) else {
                    return nil
                }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// True when `self` is `other` or lies below it.
    public func isDescendant(of other: ObjectPath) -> Bool {
        if other.rawValue == "/" { return true }
        return rawValue == other.rawValue || rawValue.hasPrefix(other.rawValue + "/")
    }
}

/// Validated D-Bus names. Each `validate` function throws
/// ``DBusError/invalidArgument(_:)`` for input libdbus would reject, and returns the
/// string unchanged otherwise, so that nothing invalid ever reaches libdbus (which
/// aborts the process on invalid names).
public enum DBusName {
    /// A bus name, unique (`:1.42`) or well-known (`org.shmbus.Registry1`)
    /// (`dbus_validate_bus_name`).
    @discardableResult
    public static func validateBusName(_ s: String) throws(DBusError) -> String {
        guard libdbusAccepts(s, dbus_validate_bus_name) else {
            throw .invalidArgument("'\(s.debugEscaped)' is not a valid D-Bus bus name")
        }
        return s
    }

    /// An interface name such as `org.shmbus.Registry1` (`dbus_validate_interface`).
    @discardableResult
    public static func validateInterface(_ s: String) throws(DBusError) -> String {
        guard libdbusAccepts(s, dbus_validate_interface) else {
            throw .invalidArgument("'\(s.debugEscaped)' is not a valid D-Bus interface name")
        }
        return s
    }

    /// A method or signal name such as `RegisterSegment` (`dbus_validate_member`).
    @discardableResult
    public static func validateMember(_ s: String) throws(DBusError) -> String {
        guard libdbusAccepts(s, dbus_validate_member) else {
            throw .invalidArgument("'\(s.debugEscaped)' is not a valid D-Bus member name")
        }
        return s
    }

    /// An error name such as `org.shmbus.Error.NotFound` (`dbus_validate_error_name`).
    @discardableResult
    public static func validateErrorName(_ s: String) throws(DBusError) -> String {
        guard libdbusAccepts(s, dbus_validate_error_name) else {
            throw .invalidArgument("'\(s.debugEscaped)' is not a valid D-Bus error name")
        }
        return s
    }

    /// A string argument: valid UTF-8 (Swift guarantees it) without NUL bytes, which
    /// the wire format cannot carry (`dbus_validate_utf8`).
    @discardableResult
    public static func validateString(_ s: String) throws(DBusError) -> String {
        guard libdbusAccepts(s, dbus_validate_utf8) else {
            throw .invalidArgument("string \(s.prefix(40).debugDescription) contains a NUL byte or invalid UTF-8")
        }
        return s
    }
}

extension String {
    /// The string with control characters escaped, for error messages about bad input.
    var debugEscaped: String {
        let limited = count > 300 ? String(prefix(300)) + "…" : self
        var out = ""
        for scalar in limited.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension ObjectPath: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let path = ObjectPath(rawValue: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid object path '\(text)'"))
        }
        self = path
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
