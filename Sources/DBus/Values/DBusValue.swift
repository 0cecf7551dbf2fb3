/// One D-Bus value of any type, nested to any legal depth.
///
/// Decoding produces `ay` as ``bytes(_:)``; encoding also accepts
/// `.array(.byte, …)`, and the two compare equal.
public indirect enum DBusValue: Sendable, CustomStringConvertible {
    case byte(UInt8)
    case boolean(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(ObjectPath)
    case signature(DBusSignature)
    case unixFD(UnixFileDescriptor)
    /// `v`: a value carrying its own type.
    case variant(DBusValue)
    /// `ay`, stored contiguously: the fast path for payloads.
    case bytes([UInt8])
    /// `aT`: all elements must have type `T`.
    case array(DBusType, [DBusValue])
    /// `a{KV}`: entries in wire order (D-Bus dictionaries are ordered and may repeat keys).
    case dictionary(key: DBusType, value: DBusType, [DBusDictEntry])
    /// `(…)`: at least one field.
    case structure([DBusValue])

    /// The value's complete type.
    public var type: DBusType {
        switch self {
        case .byte: .byte
        case .boolean: .boolean
        case .int16: .int16
        case .uint16: .uint16
        case .int32: .int32
        case .uint32: .uint32
        case .int64: .int64
        case .uint64: .uint64
        case .double: .double
        case .string: .string
        case .objectPath: .objectPath
        case .signature: .signature
        case .unixFD: .unixFD
        case .variant: .variant
        case .bytes: .array(.byte)
        case .array(let element, _): .array(element)
        case .dictionary(let key, let value, _): .dictionary(key: key, value: value)
        case .structure(let fields): .structure(fields.map(\.type))
        }
    }

    public var description: String {
        switch self {
        case .byte(let v): "byte \(v)"
        case .boolean(let v): "\(v)"
        case .int16(let v): "int16 \(v)"
        case .uint16(let v): "uint16 \(v)"
        case .int32(let v): "int32 \(v)"
        case .uint32(let v): "uint32 \(v)"
        case .int64(let v): "int64 \(v)"
        case .uint64(let v): "uint64 \(v)"
        case .double(let v): "\(v)"
        case .string(let v): v.debugDescription
        case .objectPath(let v): "objectpath '\(v)'"
        case .signature(let v): "signature '\(v)'"
        case .unixFD(let v): "\(v)"
        case .variant(let v): "<\(v)>"
        case .bytes(let v): v.count <= 16 ? "bytes \(v)" : "bytes [\(v.count) bytes]"
        case .array(_, let v): "[" + v.map(\.description).joined(separator: ", ") + "]"
        case .dictionary(_, _, let v): "{" + v.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .structure(let v): "(" + v.map(\.description).joined(separator: ", ") + ")"
        }
    }
}

/// One entry of a D-Bus dictionary.
public struct DBusDictEntry: Sendable, Hashable {
    public var key: DBusValue
    public var value: DBusValue

    public init(key: DBusValue, value: DBusValue) {
        self.key = key
        self.value = value
    }
}

extension DBusValue: Hashable {
    public static func == (lhs: DBusValue, rhs: DBusValue) -> Bool {
        switch (lhs, rhs) {
        case (.byte(let a), .byte(let b)): a == b
        case (.boolean(let a), .boolean(let b)): a == b
        case (.int16(let a), .int16(let b)): a == b
        case (.uint16(let a), .uint16(let b)): a == b
        case (.int32(let a), .int32(let b)): a == b
        case (.uint32(let a), .uint32(let b)): a == b
        case (.int64(let a), .int64(let b)): a == b
        case (.uint64(let a), .uint64(let b)): a == b
        case (.double(let a), .double(let b)): a.bitPattern == b.bitPattern
        case (.string(let a), .string(let b)): a == b
        case (.objectPath(let a), .objectPath(let b)): a == b
        case (.signature(let a), .signature(let b)): a == b
        case (.unixFD(let a), .unixFD(let b)): a == b
        case (.variant(let a), .variant(let b)): a == b
        case (.bytes(let a), .bytes(let b)): a == b
        case (.bytes(let a), .array(.byte, let b)), (.array(.byte, let b), .bytes(let a)):
            a.count == b.count && zip(a, b).allSatisfy { .byte($0) == $1 }
        case (.array(let ta, let a), .array(let tb, let b)): ta == tb && a == b
        case (.dictionary(let ka, let va, let a), .dictionary(let kb, let vb, let b)): ka == kb && va == vb && a == b
        case (.structure(let a), .structure(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        switch self {
        case .byte(let v): hasher.combine(v)
        case .boolean(let v): hasher.combine(v)
        case .int16(let v): hasher.combine(v)
        case .uint16(let v): hasher.combine(v)
        case .int32(let v): hasher.combine(v)
        case .uint32(let v): hasher.combine(v)
        case .int64(let v): hasher.combine(v)
        case .uint64(let v): hasher.combine(v)
        case .double(let v): hasher.combine(v.bitPattern)
        case .string(let v): hasher.combine(v)
        case .objectPath(let v): hasher.combine(v)
        case .signature(let v): hasher.combine(v)
        case .unixFD(let v): hasher.combine(v)
        case .variant(let v): hasher.combine(v)
        // `ay` hashes the same in both spellings, as it compares equal.
        case .bytes(let v): for b in v { hasher.combine(b) }
        case .array(.byte, let v): for case .byte(let b) in v { hasher.combine(b) }
        case .array(_, let v): hasher.combine(v)
        case .dictionary(_, _, let v): hasher.combine(v)
        case .structure(let v): hasher.combine(v)
        }
    }
}
