import Foundation

/// A Swift type with a fixed D-Bus type that converts to and from ``DBusValue``.
///
/// Standard types conform (integers, `Bool`, `Double`, `String`, ``ObjectPath``,
/// ``DBusSignature``, ``UnixFileDescriptor``, `[UInt8]` and `Data` as `ay`, arrays,
/// dictionaries, ``DBusVariant``); conform your own structs to map D-Bus structs.
public protocol DBusCodable: Sendable {
    /// The D-Bus type every value of this Swift type has.
    static var dbusType: DBusType { get }
    /// This value as a D-Bus value.
    var dbusValue: DBusValue { get }
    /// Decodes from a D-Bus value, throwing ``DBusError/invalidArgument(_:)`` when the
    /// value has another type.
    init(dbusValue: DBusValue) throws(DBusError)
    /// Decodes from a D-Bus value; what the generic decoders (arrays, dictionaries,
    /// variants, argument lists) call. By default ``init(dbusValue:)``; a reference type
    /// returns the object the value already holds (see ``UnixFileDescriptor``).
    static func decoded(from dbusValue: DBusValue) throws(DBusError) -> Self
}

extension DBusCodable {
    public static func decoded(from dbusValue: DBusValue) throws(DBusError) -> Self {
        try Self(dbusValue: dbusValue)
    }

    static func mismatch(_ value: DBusValue) -> DBusError {
        .invalidArgument("expected a value of type '\(dbusType)', got '\(value.type)'")
    }
}

extension DBusValue {
    /// Wraps any codable Swift value.
    public init<T: DBusCodable>(_ value: T) {
        self = value.dbusValue
    }

    /// Decodes this value as `T`.
    public func decode<T: DBusCodable>(as type: T.Type = T.self) throws(DBusError) -> T {
        try T.decoded(from: self)
    }
}

// MARK: Basic types

extension UInt8: DBusCodable {
    public static var dbusType: DBusType { .byte }
    public var dbusValue: DBusValue { .byte(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .byte(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Bool: DBusCodable {
    public static var dbusType: DBusType { .boolean }
    public var dbusValue: DBusValue { .boolean(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .boolean(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int16: DBusCodable {
    public static var dbusType: DBusType { .int16 }
    public var dbusValue: DBusValue { .int16(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int16(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt16: DBusCodable {
    public static var dbusType: DBusType { .uint16 }
    public var dbusValue: DBusValue { .uint16(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint16(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int32: DBusCodable {
    public static var dbusType: DBusType { .int32 }
    public var dbusValue: DBusValue { .int32(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int32(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt32: DBusCodable {
    public static var dbusType: DBusType { .uint32 }
    public var dbusValue: DBusValue { .uint32(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint32(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int64: DBusCodable {
    public static var dbusType: DBusType { .int64 }
    public var dbusValue: DBusValue { .int64(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int64(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt64: DBusCodable {
    public static var dbusType: DBusType { .uint64 }
    public var dbusValue: DBusValue { .uint64(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint64(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Double: DBusCodable {
    public static var dbusType: DBusType { .double }
    public var dbusValue: DBusValue { .double(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .double(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension String: DBusCodable {
    public static var dbusType: DBusType { .string }
    public var dbusValue: DBusValue { .string(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .string(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension ObjectPath: DBusCodable {
    public static var dbusType: DBusType { .objectPath }
    public var dbusValue: DBusValue { .objectPath(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .objectPath(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension DBusSignature: DBusCodable {
    public static var dbusType: DBusType { .signature }
    public var dbusValue: DBusValue { .signature(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .signature(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UnixFileDescriptor: DBusCodable {
    public static var dbusType: DBusType { .unixFD }
    public var dbusValue: DBusValue { .unixFD(self) }
    /// A new owner of a duplicate of the value's descriptor (`fcntl(F_DUPFD_CLOEXEC)`):
    /// an initialiser cannot return the object the value holds. The generic decoders use
    /// ``decoded(from:)``, which does not duplicate.
    public convenience init(dbusValue: DBusValue) throws(DBusError) {
        guard case .unixFD(let v) = dbusValue else { throw UnixFileDescriptor.mismatch(dbusValue) }
        do {
            try self.init(duplicating: v.rawValue)
        } catch {
            throw .failed("cannot duplicate \(v): \(error)")
        }
    }

    /// The descriptor the value holds, shared: the value and the caller own the same
    /// object, so nothing is duplicated (libdbus already gave this process its own).
    public static func decoded(from dbusValue: DBusValue) throws(DBusError) -> UnixFileDescriptor {
        guard case .unixFD(let v) = dbusValue else { throw UnixFileDescriptor.mismatch(dbusValue) }
        return v
    }
}

/// A `v` value: any D-Bus value with its type.
public struct DBusVariant: DBusCodable, Hashable, CustomStringConvertible {
    public var value: DBusValue

    public init(_ value: DBusValue) { self.value = value }
    public init<T: DBusCodable>(_ value: T) { self.value = value.dbusValue }

    public static var dbusType: DBusType { .variant }
    public var dbusValue: DBusValue { .variant(value) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .variant(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        value = v
    }
    public var description: String { "<\(value)>" }
}

// MARK: Containers

extension Array: DBusCodable where Element: DBusCodable {
    public static var dbusType: DBusType { .array(Element.dbusType) }

    public var dbusValue: DBusValue {
        // Test the element type, not the value: an empty array of any type casts to
        // [UInt8], and would then go out as `ay`. With the type known to be UInt8 the
        // array is reinterpreted, not cast: `as?` between generic arrays checks element
        // by element (8x the time of the whole D-Bus round trip of a 64 MiB `ay`).
        if Element.self == UInt8.self { return .bytes(unsafeBitCast(self, to: [UInt8].self)) }
        return .array(Element.dbusType, map(\.dbusValue))
    }

    public init(dbusValue: DBusValue) throws(DBusError) {
        switch dbusValue {
        case .bytes(let bytes) where Element.self == UInt8.self:
            // Element is UInt8 here: the same type, reinterpreted in O(1) (see dbusValue).
            self = unsafeBitCast(bytes, to: [Element].self)
        case .bytes(let bytes) where Element.dbusType == .byte:
            var out: [Element] = []
            out.reserveCapacity(bytes.count)
            for b in bytes { out.append(try Element(dbusValue: .byte(b))) }
            self = out
        case .array(let type, let values) where type == Element.dbusType:
            var out: [Element] = []
            out.reserveCapacity(values.count)
            for v in values { out.append(try Element.decoded(from: v)) }
            self = out
        default:
            throw Self.mismatch(dbusValue)
        }
    }
}

extension Data: DBusCodable {
    public static var dbusType: DBusType { .array(.byte) }
    public var dbusValue: DBusValue { .bytes([UInt8](self)) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        self = Data(try [UInt8](dbusValue: dbusValue))
    }
}

extension Dictionary: DBusCodable where Key: DBusCodable, Value: DBusCodable {
    public static var dbusType: DBusType { .dictionary(key: Key.dbusType, value: Value.dbusType) }

    /// Entries are sent in the dictionary's iteration order.
    public var dbusValue: DBusValue {
        .dictionary(
            key: Key.dbusType, value: Value.dbusType,
            map { DBusDictEntry(key: $0.key.dbusValue, value: $0.value.dbusValue) }
        )
    }

    /// A repeated key keeps its last value.
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .dictionary(let k, let v, let entries) = dbusValue, k == Key.dbusType, v == Value.dbusType else {
            throw Self.mismatch(dbusValue)
        }
        var out: [Key: Value] = [:]
        out.reserveCapacity(entries.count)
        for entry in entries {
            out[try Key.decoded(from: entry.key)] = try Value.decoded(from: entry.value)
        }
        self = out
    }
}

extension Dictionary where Key == String, Value == DBusVariant {
    /// The value of `key` decoded as `T`, nil when absent; throws when present with
    /// another type. For `a{sv}` option dictionaries.
    public func decode<T: DBusCodable>(_ key: String, as type: T.Type = T.self) throws(DBusError) -> T? {
        guard let variant = self[key] else { return nil }
        do {
            return try T.decoded(from: variant.value)
        } catch {
            throw .invalidArgument("option '\(key)' must have type '\(T.dbusType)', got '\(variant.value.type)'")
        }
    }
}

// MARK: Decoding message bodies

extension Array where Element == DBusValue {
    /// Decodes a message body as the given types, checking the count:
    /// `let (name, path) = try reply.body.decode(String.self, ObjectPath.self)`.
    public func decode<each T: DBusCodable>(_ types: repeat (each T).Type) throws(DBusError) -> (repeat each T) {
        var index = 0
        var expected = 0
        for _ in repeat (each types) { expected += 1 }
        guard count == expected else {
            let wanted = repeatSignature(repeat each types)
            throw .invalidArgument("expected \(expected) values of signature '\(wanted)', got \(count) of '\(DBusSignature(map(\.type)))'")
        }
        func next<U: DBusCodable>(_: U.Type) throws(DBusError) -> U {
            defer { index += 1 }
            return try U.decoded(from: self[index])
        }
        return (repeat try next(each types))
    }
}

private func repeatSignature<each T: DBusCodable>(_ types: repeat (each T).Type) -> String {
    var out = ""
    for type in repeat each types { out += type.dbusType.signature }
    return out
}
