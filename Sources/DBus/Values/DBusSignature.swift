import CDBus

/// A validated D-Bus signature: a sequence of complete types such as `sha{sv}`.
///
/// Parsing enforces every rule of the specification (length at most 255, non-empty
/// structs, dict entries only as array elements with a basic key, at most 32 nested
/// arrays and 32 nested structs), so a signature built here never trips a libdbus
/// assertion.
public struct DBusSignature: Hashable, Sendable, RawRepresentable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public static let maximumLength = 255
    public static let maximumArrayDepth = 32
    public static let maximumStructDepth = 32

    public let rawValue: String
    /// The complete types, in order.
    public let types: [DBusType]

    public init?(rawValue: String) {
        guard let parsed = try? DBusSignature(validating: rawValue) else { return nil }
        self = parsed
    }

    /// Parses and validates `string`.
    public init(validating string: String) throws(DBusError) {
        guard string.utf8.count <= Self.maximumLength else {
            throw .invalidArgument("signature is \(string.utf8.count) bytes long; the limit is \(Self.maximumLength)")
        }
        var parser = SignatureParser(bytes: Array(string.utf8))
        var types: [DBusType] = []
        while !parser.atEnd {
            types.append(try parser.parseCompleteType(arrayDepth: 0, structDepth: 0))
        }
        self.rawValue = string
        self.types = types
    }

    /// The signature of `types`.
    public init(_ types: [DBusType]) {
        var raw = ""
        for type in types { type.appendSignature(to: &raw) }
        self.rawValue = raw
        self.types = types
    }

    /// For literals in source code; an invalid literal is a programming error.
    public init(stringLiteral value: String) {
        guard let signature = DBusSignature(rawValue: value) else {
            preconditionFailure("invalid D-Bus signature literal '\(value)'")
        }
        self = signature
    }

    public static let empty = DBusSignature([])

    public var description: String { rawValue }

    /// The single complete type of a one-type signature.
    public var singleType: DBusType? { types.count == 1 ? types[0] : nil }
}

/// A recursive-descent parser over a signature's bytes.
private struct SignatureParser {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool { index >= bytes.count }

    private func fail(_ what: String) -> DBusError {
        let text = String(decoding: bytes, as: UTF8.self)
        return .invalidArgument("invalid signature '\(text.debugEscaped)' at position \(index): \(what)")
    }

    mutating func parseCompleteType(arrayDepth: Int, structDepth: Int) throws(DBusError) -> DBusType {
        guard index < bytes.count else { throw fail("a type is missing") }
        let byte = bytes[index]
        index += 1
        guard let code = DBusTypeCode(rawValue: byte) else {
            throw fail("'\(Character(Unicode.Scalar(byte)))' is not a type code")
        }
        if let basic = DBusType(basic: code) { return basic }
        switch code {
        case .array:
            guard arrayDepth < DBusSignature.maximumArrayDepth else {
                throw fail("more than \(DBusSignature.maximumArrayDepth) nested arrays")
            }
            if index < bytes.count, bytes[index] == DBusTypeCode.dictEntryBegin.rawValue {
                index += 1
                guard structDepth < DBusSignature.maximumStructDepth else {
                    throw fail("more than \(DBusSignature.maximumStructDepth) nested structs and dict entries")
                }
                let key = try parseCompleteType(arrayDepth: arrayDepth + 1, structDepth: structDepth + 1)
                guard key.isBasic else { throw fail("dict entry keys must be basic types") }
                let value = try parseCompleteType(arrayDepth: arrayDepth + 1, structDepth: structDepth + 1)
                guard index < bytes.count, bytes[index] == DBusTypeCode.dictEntryEnd.rawValue else {
                    throw fail("a dict entry holds exactly one key and one value, then '}'")
                }
                index += 1
                return .dictionary(key: key, value: value)
            }
            return .array(try parseCompleteType(arrayDepth: arrayDepth + 1, structDepth: structDepth))
        case .structBegin:
            guard structDepth < DBusSignature.maximumStructDepth else {
                throw fail("more than \(DBusSignature.maximumStructDepth) nested structs")
            }
            var fields: [DBusType] = []
            while true {
                guard index < bytes.count else { throw fail("unterminated struct") }
                if bytes[index] == DBusTypeCode.structEnd.rawValue {
                    index += 1
                    break
                }
                fields.append(try parseCompleteType(arrayDepth: arrayDepth, structDepth: structDepth + 1))
            }
            guard !fields.isEmpty else { throw fail("empty struct") }
            return .structure(fields)
        default:
            throw fail("'\(Character(Unicode.Scalar(byte)))' cannot start a type here")
        }
    }
}
