import DBus

/// One argument or property as the emitters need it: its D-Bus and Swift names and
/// types.
struct Member {
    var dbusName: String
    var swiftName: String
    var type: DBusType
    var swiftType: String
    var doc: String
    /// Set when the Swift type comes from an annotation, so a generated check must
    /// prove it has the declared D-Bus type.
    var checked: Bool
}

/// An interface as the emitters need it: the declaration plus Swift names and the
/// typed dictionaries its arguments declare.
struct InterfaceModel {
    var declaration: DBusInterface
    var namespace: String
    var dictionaries: [TypedDictionary] = []

    init(_ declaration: DBusInterface) throws {
        self.declaration = declaration
        namespace = SwiftNames.namespace(of: declaration.name)
        // The Implementation protocol has getters only: a writable property would be
        // declared in introspection and refused on the bus.
        if let writable = declaration.properties.first(where: { $0.access != .read }) {
            throw GeneratorError("\(declaration.name).\(writable.name): writable properties are not generated yet")
        }
        for method in declaration.methods {
            for argument in method.inputs {
                if let typed = try TypedDictionary(argument: argument, owner: "\(method.name).\(argument.name ?? "")", isInput: true) {
                    dictionaries.append(typed)
                }
            }
            for argument in method.outputs {
                if let typed = try TypedDictionary(argument: argument, owner: "\(method.name).\(argument.name ?? "")", isInput: false) {
                    dictionaries.append(typed)
                }
            }
        }
    }

    func member(_ argument: DBusArgument, index: Int, of owner: String) throws -> Member {
        let name = argument.name ?? "arg\(index)"
        return try member(name: name, type: argument.type, annotations: argument.annotations, owner: "\(owner).\(name)")
    }

    func member(_ property: DBusProperty) throws -> Member {
        try member(name: property.name, type: property.type, annotations: property.annotations, owner: property.name)
    }

    private func member(name: String, type: DBusType, annotations: [DBusAnnotation], owner: String) throws -> Member {
        let doc = Annotations.value(Annotations.doc, in: annotations) ?? ""
        if let dictionary = Annotations.value(Annotations.dictionary, in: annotations) {
            return Member(
                dbusName: name, swiftName: SwiftNames.lowerCamel(name), type: type, swiftType: dictionary, doc: doc, checked: true)
        }
        if let swift = Annotations.value(Annotations.swiftType, in: annotations) {
            return Member(dbusName: name, swiftName: SwiftNames.lowerCamel(name), type: type, swiftType: swift, doc: doc, checked: true)
        }
        guard let swift = SwiftNames.swiftType(for: type) else {
            throw GeneratorError("\(declaration.name) \(owner): type \(type) needs an \(Annotations.swiftType) annotation")
        }
        return Member(dbusName: name, swiftName: SwiftNames.lowerCamel(name), type: type, swiftType: swift, doc: doc, checked: false)
    }

    func inputs(of method: DBusMethod) throws -> [Member] {
        try method.inputs.enumerated().map { try member($1, index: $0, of: method.name) }
    }

    func outputs(of method: DBusMethod) throws -> [Member] {
        try method.outputs.enumerated().map { try member($1, index: $0, of: method.name) }
    }

    func arguments(of signal: DBusSignal) throws -> [Member] {
        try signal.arguments.enumerated().map { try member($1, index: $0, of: signal.name) }
    }

    static func doc(_ annotations: [DBusAnnotation]) -> String {
        Annotations.value(Annotations.doc, in: annotations) ?? ""
    }

    /// `(segment: String, path: ObjectPath)`, `String` or `Void`.
    static func resultType(_ outputs: [Member]) -> String {
        switch outputs.count {
        case 0: "Void"
        case 1: outputs[0].swiftType
        default: "(" + outputs.map { "\($0.swiftName): \($0.swiftType)" }.joined(separator: ", ") + ")"
        }
    }

    /// `String.self, ObjectPath.self`
    static func decodeTypes(_ members: [Member]) -> String {
        members.map { "\($0.swiftType).self" }.joined(separator: ", ")
    }
}
