/// A complete D-Bus type, as one "single complete type" of a signature.
public indirect enum DBusType: Hashable, Sendable, CustomStringConvertible {
    case byte, boolean, int16, uint16, int32, uint32, int64, uint64, double
    case string, objectPath, signature, unixFD
    case variant
    /// `aT`
    case array(DBusType)
    /// `a{KV}`: an array of dict entries; the key is a basic type.
    case dictionary(key: DBusType, value: DBusType)
    /// `(T…)`, with at least one field.
    case structure([DBusType])

    /// The signature of this one type, e.g. `a{sv}`.
    public var description: String { signature }

    /// The signature of this one type, e.g. `a{sv}`.
    public var signature: String {
        var out = ""
        appendSignature(to: &out)
        return out
    }

    func appendSignature(to out: inout String) {
        switch self {
        case .array(let element):
            out += "a"
            element.appendSignature(to: &out)
        case .dictionary(let key, let value):
            out += "a{"
            key.appendSignature(to: &out)
            value.appendSignature(to: &out)
            out += "}"
        case .structure(let fields):
            out += "("
            for field in fields { field.appendSignature(to: &out) }
            out += ")"
        default:
            out.unicodeScalars.append(Unicode.Scalar(code.rawValue))
        }
    }

    /// The wire type code of this type (for containers, the code that opens it).
    public var code: DBusTypeCode {
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
        case .array, .dictionary: .array
        case .structure: .struct
        }
    }

    /// Basic types: the only ones allowed as dictionary keys.
    public var isBasic: Bool {
        switch self {
        case .variant, .array, .dictionary, .structure: false
        default: true
        }
    }

    /// Fixed-size basic types: the ones libdbus can read and write as a block
    /// (`dbus_message_iter_get_fixed_array`), except `h`, whose values are remapped.
    var isFixed: Bool {
        switch self {
        case .byte, .boolean, .int16, .uint16, .int32, .uint32, .int64, .uint64, .double: true
        default: false
        }
    }

    /// Alignment on the wire (specification, "Marshaling").
    var alignment: Int {
        switch self {
        case .byte, .signature, .variant: 1
        case .int16, .uint16: 2
        case .boolean, .int32, .uint32, .unixFD, .string, .objectPath, .array, .dictionary: 4
        case .int64, .uint64, .double, .structure: 8
        }
    }

    /// Size on the wire of a fixed type.
    var fixedSize: Int {
        switch self {
        case .byte: 1
        case .int16, .uint16: 2
        case .boolean, .int32, .uint32, .unixFD: 4
        case .int64, .uint64, .double: 8
        default: 0
        }
    }

    /// The basic type for a code, if the code is one.
    init?(basic code: DBusTypeCode) {
        switch code {
        case .byte: self = .byte
        case .boolean: self = .boolean
        case .int16: self = .int16
        case .uint16: self = .uint16
        case .int32: self = .int32
        case .uint32: self = .uint32
        case .int64: self = .int64
        case .uint64: self = .uint64
        case .double: self = .double
        case .string: self = .string
        case .objectPath: self = .objectPath
        case .signature: self = .signature
        case .unixFD: self = .unixFD
        case .variant: self = .variant
        default: return nil
        }
    }
}
