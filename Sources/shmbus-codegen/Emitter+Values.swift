import DBus

/// Value types: one struct per signal, one per typed dictionary.
extension Emitter {
    func signal(_ signal: DBusSignal, _ w: inout CodeWriter) throws {
        let members = try model.arguments(of: signal)
        w.line()
        w.block("extension \(ns) {") { w in
            let doc = InterfaceModel.doc(signal.annotations)
            w.doc("The `\(signal.name)` signal" + (doc.isEmpty ? "." : ": " + doc))
            w.block("public struct \(signal.name): DBusSignalValue {") { w in
                w.line("public static var interfaceName: String { \(ns).name }")
                w.line("public static let memberName = \(SwiftNames.literal(signal.name))")
                w.line("public static let signature: DBusSignature = \(SwiftNames.literal(signal.signature.rawValue))")
                w.line()
                for member in members {
                    w.doc(member.doc)
                    w.line("public var \(member.swiftName): \(member.swiftType)")
                }
                w.line()
                w.memberwiseInit(members.map { ($0.swiftName, $0.swiftType) })
                w.line()
                w.block("public init(body: [DBusValue]) throws(DBusError) {") { w in
                    let targets = members.map { "self.\($0.swiftName)" }
                    let pattern = targets.count == 1 ? targets[0] : "(" + targets.joined(separator: ", ") + ")"
                    w.line("\(pattern) = try body.decode(\(InterfaceModel.decodeTypes(members)))")
                }
                w.line()
                w.line("public var body: [DBusValue] { [" + members.map { "\($0.swiftName).dbusValue" }.joined(separator: ", ") + "] }")
            }
        }
    }

    func dictionaryType(_ dictionary: TypedDictionary, _ w: inout CodeWriter) {
        let fields = dictionary.keys.map { (key: $0, name: SwiftNames.lowerCamel($0.key)) }
        w.line()
        w.block("extension \(ns) {") { w in
            w.line("/// The `a{sv}` of \(dictionary.owner), typed. Absent keys are nil; a key of the wrong")
            w.line(
                dictionary.rejectsUnknownKeys
                    ? "/// type and a key not declared here are rejected when decoding."
                    : "/// type is rejected when decoding; keys a newer peer added are ignored.")
            w.block("public struct \(dictionary.name): DBusCodable {") { w in
                for field in fields {
                    w.doc("`\(field.key.key)` (`\(field.key.type.signature)`): \(field.key.doc)")
                    w.line("public var \(field.name): \(field.key.swiftType)?")
                }
                w.line()
                w.line("/// The keys this declaration knows.")
                w.line("public static let keys = [" + fields.map { SwiftNames.literal($0.key.key) }.joined(separator: ", ") + "]")
                w.line()
                w.memberwiseInit(fields.map { ($0.name, $0.key.swiftType + "?") }, defaultValue: "nil")
                w.line()
                w.block("public init(dictionary: [String: DBusVariant]) throws(DBusError) {") { w in
                    if dictionary.rejectsUnknownKeys { w.line("try dictionary.rejectUnknownKeys(known: Self.keys)") }
                    for field in fields {
                        w.line("\(field.name) = try dictionary.decode(\(SwiftNames.literal(field.key.key)), as: \(field.key.swiftType).self)")
                    }
                }
                w.line()
                w.line("/// The present keys as an `a{sv}` dictionary.")
                w.block("public var dictionary: [String: DBusVariant] {") { w in
                    w.line("var out: [String: DBusVariant] = [:]")
                    for field in fields {
                        w.line("if let \(field.name) { out[\(SwiftNames.literal(field.key.key))] = DBusVariant(\(field.name)) }")
                    }
                    w.line("return out")
                }
                w.line()
                w.line("public static var dbusType: DBusType { .dictionary(key: .string, value: .variant) }")
                w.line("public var dbusValue: DBusValue { dictionary.dbusValue }")
                w.block("public init(dbusValue: DBusValue) throws(DBusError) {") { w in
                    w.line("try self.init(dictionary: try [String: DBusVariant](dbusValue: dbusValue))")
                }
            }
        }
    }
}
