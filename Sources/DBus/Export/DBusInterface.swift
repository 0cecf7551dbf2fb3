/// One declaration of a D-Bus interface: its methods, signals and properties.
///
/// The same declaration drives everything: dispatch and signature checking when it
/// is exported (``DBusConnection/export(_:at:objectManager:)``), the `Introspect`
/// XML, `org.freedesktop.DBus.Properties`, `ObjectManager`, and client-side checks
/// in a ``DBusProxy``.
///
/// ```swift
/// let counter = DBusInterface("org.example.Counter1") {
///     DBusMethod("Add", inputs: [.init("amount", "u")], outputs: [.init("total", "u")]) { call in
///         let amount = try call.arguments.decode(UInt32.self)
///         return [.uint32(await state.add(amount))]
///     }
///     DBusSignal("Changed", arguments: [.init("total", "u")])
///     DBusProperty("Total", type: "u", get: { .uint32(await state.total) })
/// }
/// ```
public struct DBusInterface: Sendable {
    public var name: String
    public var methods: [DBusMethod]
    public var signals: [DBusSignal]
    public var properties: [DBusProperty]
    public var annotations: [DBusAnnotation]

    public init(
        _ name: String, methods: [DBusMethod] = [], signals: [DBusSignal] = [], properties: [DBusProperty] = [],
        annotations: [DBusAnnotation] = []
    ) {
        self.name = name
        self.methods = methods
        self.signals = signals
        self.properties = properties
        self.annotations = annotations
    }

    public init(_ name: String, @DBusInterfaceBuilder members: () -> [DBusInterfaceMember]) {
        self.init(name)
        for member in members() {
            switch member {
            case .method(let m): methods.append(m)
            case .signal(let s): signals.append(s)
            case .property(let p): properties.append(p)
            case .annotation(let a): annotations.append(a)
            }
        }
    }

    public func method(named name: String) -> DBusMethod? { methods.first { $0.name == name } }
    public func signal(named name: String) -> DBusSignal? { signals.first { $0.name == name } }
    public func property(named name: String) -> DBusProperty? { properties.first { $0.name == name } }

    /// This declaration with handlers attached to its methods by name, for a
    /// declaration read from introspection XML. Unknown names throw.
    public func implementing(_ handlers: [String: DBusMethod.Handler]) throws(DBusError) -> DBusInterface {
        var copy = self
        for (name, handler) in handlers {
            guard let index = copy.methods.firstIndex(where: { $0.name == name }) else {
                throw .invalidArgument("interface \(self.name) declares no method \(name)")
            }
            copy.methods[index].handler = handler
        }
        return copy
    }

    /// This declaration with accessors attached to the property `name`.
    public func implementingProperty(
        _ name: String, get: DBusProperty.Getter?, set: DBusProperty.Setter? = nil
    ) throws(DBusError) -> DBusInterface {
        var copy = self
        guard let index = copy.properties.firstIndex(where: { $0.name == name }) else {
            throw .invalidArgument("interface \(self.name) declares no property \(name)")
        }
        copy.properties[index].get = get
        copy.properties[index].set = set
        return copy
    }

    /// Checks names, signatures and uniqueness; with `forExport`, also that every method
    /// has a handler and every readable (writable) property a getter (setter).
    public func validate(forExport: Bool = false) throws(DBusError) {
        try DBusName.validateInterface(name)
        var seen = Set<String>()
        for method in methods {
            try DBusName.validateMember(method.name)
            guard seen.insert("m" + method.name).inserted else {
                throw .invalidArgument("interface \(name) declares method \(method.name) twice")
            }
            if forExport, method.handler == nil {
                throw .invalidArgument("method \(name).\(method.name) has no handler")
            }
        }
        for signal in signals {
            try DBusName.validateMember(signal.name)
            guard seen.insert("s" + signal.name).inserted else {
                throw .invalidArgument("interface \(name) declares signal \(signal.name) twice")
            }
        }
        for property in properties {
            guard !property.name.isEmpty, hasNoEmbeddedNUL(property.name) else {
                throw .invalidArgument("interface \(name) has a property with an invalid name")
            }
            guard seen.insert("p" + property.name).inserted else {
                throw .invalidArgument("interface \(name) declares property \(property.name) twice")
            }
            if forExport, property.access.isReadable, property.get == nil {
                throw .invalidArgument("property \(name).\(property.name) is readable but has no getter")
            }
            if forExport, property.access.isWritable, property.set == nil {
                throw .invalidArgument("property \(name).\(property.name) is writable but has no setter")
            }
        }
    }
}

/// A name/value annotation on an interface, member or argument, such as
/// `org.freedesktop.DBus.Deprecated` = `true`.
public struct DBusAnnotation: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A named argument of a method or signal.
public struct DBusArgument: Sendable, Hashable {
    public var name: String?
    public var type: DBusType
    public var annotations: [DBusAnnotation]

    public init(_ name: String?, _ type: DBusType, annotations: [DBusAnnotation] = []) {
        self.name = name
        self.type = type
        self.annotations = annotations
    }

    /// `signature` must be exactly one complete type; a literal that is not is a
    /// programming error.
    public init(_ name: String?, _ signature: DBusSignature, annotations: [DBusAnnotation] = []) {
        guard let type = signature.singleType else {
            preconditionFailure("argument \(name ?? "") needs one complete type, got '\(signature)'")
        }
        self.init(name, type, annotations: annotations)
    }
}

/// A method: its arguments, and the handler that runs when it is called.
public struct DBusMethod: Sendable {
    /// Runs a call and returns the reply's values, or throws a ``DBusError`` that is
    /// sent as the error reply (other errors become `org.freedesktop.DBus.Error.Failed`).
    /// Handlers run as tasks, so a slow handler never blocks other calls.
    public typealias Handler = @Sendable (DBusMethodCall) async throws -> [DBusValue]

    public var name: String
    public var inputs: [DBusArgument]
    public var outputs: [DBusArgument]
    public var annotations: [DBusAnnotation]
    public var handler: Handler?

    public init(
        _ name: String, inputs: [DBusArgument] = [], outputs: [DBusArgument] = [], annotations: [DBusAnnotation] = [],
        handler: Handler? = nil
    ) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.annotations = annotations
        self.handler = handler
    }

    public var inputSignature: DBusSignature { DBusSignature(inputs.map(\.type)) }
    public var outputSignature: DBusSignature { DBusSignature(outputs.map(\.type)) }
}

/// A signal an object emits.
public struct DBusSignal: Sendable {
    public var name: String
    public var arguments: [DBusArgument]
    public var annotations: [DBusAnnotation]

    public init(_ name: String, arguments: [DBusArgument] = [], annotations: [DBusAnnotation] = []) {
        self.name = name
        self.arguments = arguments
        self.annotations = annotations
    }

    public var signature: DBusSignature { DBusSignature(arguments.map(\.type)) }
}

/// A property, served through `org.freedesktop.DBus.Properties`.
public struct DBusProperty: Sendable {
    public typealias Getter = @Sendable () async throws -> DBusValue
    public typealias Setter = @Sendable (DBusValue) async throws -> Void

    public enum Access: String, Sendable {
        case read, write, readwrite
        var isReadable: Bool { self != .write }
        var isWritable: Bool { self != .read }
    }

    /// What a change of the property emits, from the
    /// `org.freedesktop.DBus.Property.EmitsChangedSignal` annotation.
    public enum ChangeSignal: String, Sendable {
        /// PropertiesChanged with the new value (the default).
        case `true`
        /// PropertiesChanged listing the property as invalidated, without its value.
        case invalidates
        /// The property never changes.
        case const
        /// No signal.
        case `false`
    }

    public var name: String
    public var type: DBusType
    public var access: Access
    public var annotations: [DBusAnnotation]
    public var get: Getter?
    public var set: Setter?

    public init(
        _ name: String, type: DBusType, access: Access? = nil, annotations: [DBusAnnotation] = [],
        get: Getter? = nil, set: Setter? = nil
    ) {
        self.name = name
        self.type = type
        self.access = access ?? (set == nil ? .read : .readwrite)
        self.annotations = annotations
        self.get = get
        self.set = set
    }

    public init(
        _ name: String, type signature: DBusSignature, access: Access? = nil, annotations: [DBusAnnotation] = [],
        get: Getter? = nil, set: Setter? = nil
    ) {
        guard let type = signature.singleType else {
            preconditionFailure("property \(name) needs one complete type, got '\(signature)'")
        }
        self.init(name, type: type, access: access, annotations: annotations, get: get, set: set)
    }

    public var changeSignal: ChangeSignal {
        annotations.last { $0.name == "org.freedesktop.DBus.Property.EmitsChangedSignal" }
            .flatMap { ChangeSignal(rawValue: $0.value) } ?? .true
    }
}

/// One member of an interface declaration, for ``DBusInterfaceBuilder``.
public enum DBusInterfaceMember: Sendable {
    case method(DBusMethod)
    case signal(DBusSignal)
    case property(DBusProperty)
    case annotation(DBusAnnotation)
}

/// Builds the members of a ``DBusInterface`` from a list of declarations.
@resultBuilder
public enum DBusInterfaceBuilder {
    public static func buildExpression(_ method: DBusMethod) -> [DBusInterfaceMember] { [.method(method)] }
    public static func buildExpression(_ signal: DBusSignal) -> [DBusInterfaceMember] { [.signal(signal)] }
    public static func buildExpression(_ property: DBusProperty) -> [DBusInterfaceMember] { [.property(property)] }
    public static func buildExpression(_ annotation: DBusAnnotation) -> [DBusInterfaceMember] { [.annotation(annotation)] }
    public static func buildBlock(_ parts: [DBusInterfaceMember]...) -> [DBusInterfaceMember] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [DBusInterfaceMember]?) -> [DBusInterfaceMember] { part ?? [] }
    public static func buildEither(first: [DBusInterfaceMember]) -> [DBusInterfaceMember] { first }
    public static func buildEither(second: [DBusInterfaceMember]) -> [DBusInterfaceMember] { second }
    public static func buildArray(_ parts: [[DBusInterfaceMember]]) -> [DBusInterfaceMember] { parts.flatMap { $0 } }
}

/// A method call being handled.
public struct DBusMethodCall: Sendable {
    /// The call as it arrived.
    public let message: DBusMessage
    /// The connection it arrived on, for emitting signals or calling back.
    public let connection: DBusConnection

    /// The arguments, already checked against the method's declared signature.
    public var arguments: [DBusValue] { message.body }
    /// The caller's unique name.
    public var sender: String { message.sender ?? "" }
    /// The object path called.
    public var path: ObjectPath { message.path ?? .root }
}
