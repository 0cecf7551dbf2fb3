import DBus

/// How the generator names things in Swift: D-Bus members are UpperCamel
/// (`RegisterSegment`), arguments and dictionary keys snake_case (`start_offset`);
/// Swift wants lowerCamel for both.
enum SwiftNames {
    /// `RegisterSegment` → `registerSegment`, `ID` → `id`, `start_offset` → `startOffset`.
    static func lowerCamel(_ name: String) -> String {
        let parts = name.split(separator: "_").map(String.init)
        guard let first = parts.first else { return name }
        let head = lowerLeadingCapitals(first)
        let tail = parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }
        return escapeKeyword(head + tail.joined())
    }

    /// Lower-cases the leading run of capitals (keeping the last one of a run that
    /// begins a word: `URLPath` → `urlPath`).
    private static func lowerLeadingCapitals(_ word: String) -> String {
        let scalars = Array(word)
        var count = 0
        while count < scalars.count, scalars[count].isUppercase { count += 1 }
        if count == 0 { return word }
        if count == 1 || count == scalars.count { return word.prefix(count).lowercased() + word.dropFirst(count) }
        return word.prefix(count - 1).lowercased() + word.dropFirst(count - 1)
    }

    private static let keywords: Set<String> = [
        "class", "default", "deinit", "enum", "extension", "func", "import", "init", "internal", "let", "operator",
        "private", "protocol", "public", "static", "struct", "subscript", "typealias", "var", "break", "case",
        "continue", "do", "else", "fallthrough", "for", "if", "in", "return", "switch", "where", "while", "as",
        "is", "nil", "self", "super", "throw", "throws", "try", "true", "false", "guard", "defer", "repeat", "catch",
        "inout", "rethrows", "fileprivate", "Any", "Self", "associatedtype", "some", "any",
    ]

    private static func escapeKeyword(_ name: String) -> String {
        keywords.contains(name) ? "`\(name)`" : name
    }

    /// The namespace of an interface: its last name component (`org.shmbus.Registry1`
    /// → `Registry1`).
    static func namespace(of interface: String) -> String {
        String(interface.split(separator: ".").last ?? Substring(interface))
    }

    /// A Swift string literal of `text`.
    static func literal(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The Swift type for a D-Bus type that has a natural one; nil for structs, which
    /// need an `org.shmbus.Swift.Type` annotation naming a `DBusCodable` type.
    static func swiftType(for type: DBusType) -> String? {
        switch type {
        case .byte: "UInt8"
        case .boolean: "Bool"
        case .int16: "Int16"
        case .uint16: "UInt16"
        case .int32: "Int32"
        case .uint32: "UInt32"
        case .int64: "Int64"
        case .uint64: "UInt64"
        case .double: "Double"
        case .string: "String"
        case .objectPath: "ObjectPath"
        case .signature: "DBusSignature"
        case .unixFD: "UnixFileDescriptor"
        case .variant: "DBusVariant"
        case .array(let element): swiftType(for: element).map { "[\($0)]" }
        case .dictionary(let key, let value):
            swiftType(for: key).flatMap { k in swiftType(for: value).map { "[\(k): \($0)]" } }
        case .structure where type == blobType: "Blob"
        case .structure: nil
        }
    }

    /// docs/BLOBS.md's blob, `(a{sv}ayahtt)`: a type of its own wherever it appears, so
    /// an interface declares a blob argument by its signature alone. Its Swift type,
    /// `Blob`, lives in the `ShmBus` module, which a file that uses it imports.
    static let blobType = DBusType.structure([
        .dictionary(key: .string, value: .variant), .array(.byte), .array(.unixFD), .uint64, .uint64,
    ])

    /// The modules a generated file imports besides `DBus`, for the Swift types its
    /// members use.
    static func imports(for swiftTypes: [String]) -> [String] {
        swiftTypes.contains { $0 == "Blob" || $0.contains("[Blob]") || $0.contains(": Blob]") } ? ["ShmBus"] : []
    }
}
