import DBus

/// The annotations the generator reads, besides the standard ones. They live in the
/// XML beside what they describe, so the XML stays the one declaration.
enum Annotations {
    /// Documentation of an interface, member or argument.
    static let doc = "org.shmbus.Doc"
    /// The Swift type of an argument or property: a `DBusCodable` type of the contract
    /// module whose D-Bus type is the declared one (a generated check proves it).
    static let swiftType = "org.shmbus.Swift.Type"
    /// On an `a{sv}` argument: generate a typed dictionary of this name, with one
    /// optional field per `org.shmbus.Key.<key>` annotation.
    static let dictionary = "org.shmbus.Swift.Dictionary"
    /// `org.shmbus.Key.<key>` = `<signature> <documentation>`: one key of a typed
    /// dictionary.
    static let keyPrefix = "org.shmbus.Key."

    static func value(_ name: String, in annotations: [DBusAnnotation]) -> String? {
        annotations.last { $0.name == name }?.value
    }
}

/// One key of a typed `a{sv}` dictionary.
struct DictionaryKey {
    var key: String
    var type: DBusType
    var swiftType: String
    var doc: String
}

/// A typed `a{sv}` dictionary declared on an argument.
struct TypedDictionary {
    var name: String
    var keys: [DictionaryKey]
    /// Inputs of a method reject unknown keys (a misspelt option is an error); what a
    /// peer sends back may carry keys a newer peer added, which are ignored.
    var rejectsUnknownKeys: Bool
    var owner: String

    init?(argument: DBusArgument, owner: String, isInput: Bool) throws {
        guard let name = Annotations.value(Annotations.dictionary, in: argument.annotations) else { return nil }
        guard argument.type == .dictionary(key: .string, value: .variant) else {
            throw GeneratorError("\(owner): \(Annotations.dictionary) needs type a{sv}, not \(argument.type)")
        }
        self.name = name
        self.owner = owner
        rejectsUnknownKeys = isInput
        keys = try argument.annotations.filter { $0.name.hasPrefix(Annotations.keyPrefix) }.map { annotation in
            let key = String(annotation.name.dropFirst(Annotations.keyPrefix.count))
            let parts = annotation.value.split(separator: " ", maxSplits: 1).map(String.init)
            guard let signature = parts.first.flatMap(DBusSignature.init(rawValue:)), let type = signature.singleType,
                let swift = SwiftNames.swiftType(for: type)
            else {
                throw GeneratorError("\(owner): key \(key) needs '<signature> <doc>', got '\(annotation.value)'")
            }
            return DictionaryKey(key: key, type: type, swiftType: swift, doc: parts.count > 1 ? parts[1] : "")
        }
        guard !keys.isEmpty else { throw GeneratorError("\(owner): typed dictionary \(name) declares no keys") }
    }
}

struct GeneratorError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
