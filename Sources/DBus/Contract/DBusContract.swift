/// A signal as a typed value: one declared signal of one interface, with its
/// arguments as Swift properties.
///
/// Generated contract modules conform their signal structs to this protocol (the
/// way gdbus-codegen and zbus derive signal types from the introspection XML), so
/// that emitting, matching and decoding a signal never spell its interface, member
/// or signature at the call site.
public protocol DBusSignalValue: Sendable {
    /// The interface that declares the signal.
    static var interfaceName: String { get }
    /// The signal's member name.
    static var memberName: String { get }
    /// The declared signature of the arguments.
    static var signature: DBusSignature { get }
    /// Decodes the arguments (already checked against ``signature``).
    init(body: [DBusValue]) throws(DBusError)
    /// The arguments, in declaration order.
    var body: [DBusValue] { get }
}

extension DBusSignalValue {
    /// Decodes a received signal, checking its interface, member and signature: a
    /// peer's message is untrusted, so a mismatch throws instead of being misread.
    public init(message: DBusMessage) throws(DBusError) {
        guard message.interface == Self.interfaceName, message.member == Self.memberName else {
            throw .invalidArgument(
                "expected signal \(Self.interfaceName).\(Self.memberName), got \(message.interface ?? "?").\(message.member ?? "?")")
        }
        guard message.signature == Self.signature else {
            throw .invalidArgument("signal \(Self.memberName) should carry '\(Self.signature)', got '\(message.signature)'")
        }
        try self.init(body: message.body)
    }

    /// A match rule for this signal, narrowed by sender and path when given.
    public static func matchRule(sender: String? = nil, path: ObjectPath? = nil) -> MatchRule {
        MatchRule(sender: sender, interface: interfaceName, member: memberName, path: path)
    }
}

extension DBusConnection {
    /// Emits `signal` from the object at `path` (`dbus_message_new_signal`), without
    /// an export: for objects whose only member is the signal's source.
    public func emit<Signal: DBusSignalValue>(_ signal: Signal, from path: ObjectPath) throws(DBusError) {
        try emit(path: path, interface: Signal.interfaceName, member: Signal.memberName, signal.body)
    }

    /// The signals of type `Signal` matching `rule` (its interface and member are set
    /// here), decoded. A signal that does not decode ends the stream with its error.
    public func signals<Signal: DBusSignalValue>(
        _ type: Signal.Type, sender: String? = nil, path: ObjectPath? = nil, arguments: [Int: String] = [:]
    ) async throws -> AsyncThrowingMapSequence<DBusSignalStream, Signal> {
        var rule = Signal.matchRule(sender: sender, path: path)
        rule.arguments = arguments
        return try await signals(matching: rule).map { message in try Signal(message: message) }
    }
}

extension DBusExport {
    /// Emits `signal` from this object, checked against the exported declaration.
    public func emit<Signal: DBusSignalValue>(_ signal: Signal) throws(DBusError) {
        try emit(Signal.memberName, interface: Signal.interfaceName, signal.body)
    }

    /// Emits `PropertiesChanged` for the named properties of their interface.
    public func propertiesChanged<Name: DBusPropertyName>(_ names: [Name]) async throws {
        try await propertiesChanged(names.map(\.rawValue), interface: Name.interfaceName)
    }
}

/// The property names of one interface, as a generated enum.
public protocol DBusPropertyName: RawRepresentable, Sendable, Hashable, CaseIterable where RawValue == String {
    /// The interface that declares the properties.
    static var interfaceName: String { get }
}

/// An error that knows its D-Bus error reply. Method handlers and property getters
/// may throw it: the export layer replies with ``dbusError`` instead of
/// `org.freedesktop.DBus.Error.Failed`.
public protocol DBusErrorConvertible: Error {
    var dbusError: DBusError { get }
}

/// What every generated `Implementation` protocol refines: the hooks the generated
/// dispatch calls around an implementation's methods.
public protocol DBusObjectImplementation: Sendable {
    /// The error to reply when a call's arguments have the declared signature but do
    /// not decode (a typed dictionary with an unknown key or an ill-typed value). The
    /// default replies `org.freedesktop.DBus.Error.InvalidArgs` with `error`'s message;
    /// a service with error names of its own maps it to one of those.
    func invalidArguments(_ error: DBusError) -> any Error
}

extension DBusObjectImplementation {
    public func invalidArguments(_ error: DBusError) -> any Error { error }
}

extension Dictionary where Key == String, Value == DBusValue {
    /// The value of property `name` decoded as `T`, for typed `GetAll` results: a
    /// missing or ill-typed property throws.
    public func property<T: DBusCodable>(_ name: String, as type: T.Type = T.self) throws(DBusError) -> T {
        guard let value = self[name] else { throw .invalidArgument("the object did not report property \(name)") }
        do {
            return try T(dbusValue: value)
        } catch {
            throw .invalidArgument("property \(name) should have type '\(T.dbusType)', got '\(value.type)'")
        }
    }
}

extension Dictionary where Key == String, Value == DBusVariant {
    /// Throws for the first key (in sorted order) that is not one of `known`: typed
    /// option dictionaries call it so that a misspelt option is an error, not ignored.
    public func rejectUnknownKeys(known: [String]) throws(DBusError) {
        if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
            // A peer's key, echoed back: cut to a readable length.
            let shown = unknown.count > 64 ? unknown.prefix(64) + "…" : Substring(unknown)
            throw .invalidArgument("unknown option '\(shown)'; known options: \(known.joined(separator: ", "))")
        }
    }
}
