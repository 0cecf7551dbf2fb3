import DBus

/// A blob's attributes, FORMAT.md's model in its D-Bus form (`a{sv}`, the values `s`,
/// `x`, `ax`, `d`), in the sender's order.
///
/// The one place that knows their Swift representation: the rest of `Blob` converts
/// through ``init(dbus:payloadLength:)`` and ``dbusValue`` only, so the type can become
/// the segment format's own attribute store without touching the blob.
public struct BlobAttributes: Sendable, Hashable {
    /// The entries in order; names are unique.
    public private(set) var entries: [(name: String, value: DBusVariant)]

    public init() { entries = [] }

    /// The value of `name`, nil when absent.
    public subscript(name: String) -> DBusVariant? {
        entries.first { $0.name == name }?.value
    }

    /// Sets `name` to `value`, in place when present, else at the end.
    public mutating func set(_ name: String, _ value: DBusVariant) {
        if let index = entries.firstIndex(where: { $0.name == name }) {
            entries[index].value = value
        } else {
            entries.append((name, value))
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The attributes as the blob's first field.
    var dbusValue: DBusValue {
        .dictionary(key: .string, value: .variant, entries.map { DBusDictEntry(key: .string($0.name), value: .variant($0.value.value)) })
    }

    /// A received blob's attributes, checked (docs/BLOBS.md, "Attributes"): names valid
    /// and not repeated, values of the known types within FORMAT.md's limits. Values of
    /// other D-Bus types are skipped, as FORMAT.md's readers skip unknown entry types.
    init(dbus entries: [DBusDictEntry], payloadLength: Int) throws(BlobError) {
        self.init()
        for entry in entries {
            guard case .string(let name) = entry.key, case .variant(let value) = entry.value else {
                throw BlobError(.form, "attributes must be a{sv}")
            }
            guard Self.isValidName(name) else { throw BlobError(.attributes, "invalid attribute name \(Self.shown(name))") }
            guard self[name] == nil else { throw BlobError(.attributes, "attribute \(name) appears twice") }
            switch value {
            case .string(let text):
                guard text.utf8.count <= 4096, !text.utf8.contains(0) else {
                    throw BlobError(.attributes, "attribute \(name): a string of 0–4096 bytes without NUL")
                }
            case .int64, .double: break
            case .array(.int64, let elements):
                guard elements.count <= 64 else { throw BlobError(.attributes, "attribute \(name): more than 64 elements") }
            default: continue
            }
            self.entries.append((name, DBusVariant(value)))
        }
    }

    /// FORMAT.md's names: 1–63 bytes, a lowercase ASCII letter, then lowercase letters,
    /// digits, `-`, `_` or `.`.
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]) else { return false }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    /// A peer's name, cut to a readable length for a message.
    static func shown(_ name: String) -> String {
        name.count > 64 ? "'\(name.prefix(64))…'" : "'\(name)'"
    }

    public static func == (lhs: BlobAttributes, rhs: BlobAttributes) -> Bool {
        lhs.entries.count == rhs.entries.count && zip(lhs.entries, rhs.entries).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.name)
            hasher.combine(entry.value)
        }
    }
}
