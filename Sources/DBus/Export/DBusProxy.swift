/// A client-side view of a remote object through an interface declaration.
///
/// The proxy checks calls against the same ``DBusInterface`` a service exports:
/// unknown members and arguments of the wrong types throw before anything is sent,
/// and replies and signals of the wrong types throw instead of being misread.
public struct DBusProxy: Sendable {
    public let connection: DBusConnection
    public let destination: String
    public let path: ObjectPath
    public let interface: DBusInterface

    public init(connection: DBusConnection, destination: String, path: ObjectPath, interface: DBusInterface) {
        self.connection = connection
        self.destination = destination
        self.path = path
        self.interface = interface
    }

    /// Calls `method` and returns its reply values.
    public func call(_ method: String, _ arguments: [DBusValue] = [], timeout: Duration? = DBusConnection.defaultTimeout)
        async throws -> [DBusValue]
    {
        guard let declared = interface.method(named: method) else {
            throw DBusError.invalidArgument("interface \(interface.name) declares no method \(method)")
        }
        let signature = DBusSignature(arguments.map(\.type))
        guard signature == declared.inputSignature else {
            throw DBusError.invalidArgument(
                "\(interface.name).\(method) takes '\(declared.inputSignature)', got '\(signature)'")
        }
        let reply = try await connection.call(
            destination: destination, path: path, interface: interface.name, method: method, arguments, timeout: timeout)
        let replySignature = DBusSignature(reply.map(\.type))
        guard replySignature == declared.outputSignature else {
            throw DBusError.invalidArgument(
                "\(interface.name).\(method) should return '\(declared.outputSignature)', the peer returned '\(replySignature)'")
        }
        return reply
    }

    /// The signal `name` emitted by this object, with optional `argN` string filters.
    /// Signals whose arguments do not match the declaration end the stream with an error.
    public func signals(_ name: String, arguments filters: [Int: String] = [:]) async throws
        -> AsyncThrowingMapSequence<DBusSignalStream, [DBusValue]>
    {
        guard let declared = interface.signal(named: name) else {
            throw DBusError.invalidArgument("interface \(interface.name) declares no signal \(name)")
        }
        var rule = MatchRule(sender: destination, interface: interface.name, member: name, path: path)
        rule.arguments = filters
        let expected = declared.signature
        return try await connection.signals(matching: rule).map { message in
            guard message.signature == expected else {
                throw DBusError.invalidArgument("signal \(name) should carry '\(expected)', got '\(message.signature)'")
            }
            return message.body
        }
    }

    /// Reads a property (`org.freedesktop.DBus.Properties.Get`).
    public func property(_ name: String, timeout: Duration? = DBusConnection.defaultTimeout) async throws -> DBusValue {
        let declared = try declaredProperty(name)
        let reply = try await connection.call(
            destination: destination, path: path, interface: StandardInterfaces.propertiesName, method: "Get",
            [.string(interface.name), .string(name)], timeout: timeout)
        let value = try reply.decode(DBusVariant.self).value
        guard value.type == declared.type else {
            throw DBusError.invalidArgument("property \(name) should have type '\(declared.type)', got '\(value.type)'")
        }
        return value
    }

    /// Writes a property (`org.freedesktop.DBus.Properties.Set`).
    public func setProperty(_ name: String, _ value: DBusValue) async throws {
        let declared = try declaredProperty(name)
        guard value.type == declared.type else {
            throw DBusError.invalidArgument("property \(name) has type '\(declared.type)', got '\(value.type)'")
        }
        _ = try await connection.call(
            destination: destination, path: path, interface: StandardInterfaces.propertiesName, method: "Set",
            [.string(interface.name), .string(name), .variant(value)])
    }

    /// Reads every property (`org.freedesktop.DBus.Properties.GetAll`).
    public func allProperties() async throws -> [String: DBusValue] {
        let reply = try await connection.call(
            destination: destination, path: path, interface: StandardInterfaces.propertiesName, method: "GetAll",
            [.string(interface.name)])
        return try reply.decode([String: DBusVariant].self).mapValues(\.value)
    }

    private func declaredProperty(_ name: String) throws(DBusError) -> DBusProperty {
        guard let declared = interface.property(named: name) else {
            throw .invalidArgument("interface \(interface.name) declares no property \(name)")
        }
        return declared
    }
}

extension DBusInterface {
    /// A proxy for the object at `path` of `destination` implementing this interface.
    public func proxy(on connection: DBusConnection, destination: String, path: ObjectPath) -> DBusProxy {
        DBusProxy(connection: connection, destination: destination, path: path, interface: self)
    }
}
