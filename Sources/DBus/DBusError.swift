import CDBus

/// An error on the bus or in the D-Bus layer, named the way D-Bus names errors.
///
/// Errors that a peer sent (an `ERROR` reply) keep the peer's name and message.
/// Errors this layer raises itself use the standard `org.freedesktop.DBus.Error.*`
/// names, so one `catch` handles both, the way sd-bus's `sd_bus_error` does:
///
/// ```swift
/// do { try await proxy.call("Lookup", "frames", "latest") }
/// catch let error as DBusError where error.name == "org.shmbus.Error.NotFound" { … }
/// ```
public struct DBusError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The D-Bus error name, such as `org.freedesktop.DBus.Error.InvalidArgs`.
    public var name: String
    /// A human-readable message.
    public var message: String

    public init(name: String, message: String) {
        self.name = name
        self.message = message
    }

    public var description: String { message.isEmpty ? name : "\(name): \(message)" }

    // MARK: Standard names (D-Bus specification, libdbus's dbus-protocol.h)

    public static let failedName = "org.freedesktop.DBus.Error.Failed"
    public static let invalidArgsName = "org.freedesktop.DBus.Error.InvalidArgs"
    public static let noReplyName = "org.freedesktop.DBus.Error.NoReply"
    public static let disconnectedName = "org.freedesktop.DBus.Error.Disconnected"
    public static let limitsExceededName = "org.freedesktop.DBus.Error.LimitsExceeded"
    public static let notSupportedName = "org.freedesktop.DBus.Error.NotSupported"
    public static let noServerName = "org.freedesktop.DBus.Error.NoServer"
    public static let unknownMethodName = "org.freedesktop.DBus.Error.UnknownMethod"
    public static let unknownObjectName = "org.freedesktop.DBus.Error.UnknownObject"
    public static let unknownInterfaceName = "org.freedesktop.DBus.Error.UnknownInterface"
    public static let unknownPropertyName = "org.freedesktop.DBus.Error.UnknownProperty"
    public static let propertyReadOnlyName = "org.freedesktop.DBus.Error.PropertyReadOnly"
    public static let serviceUnknownName = "org.freedesktop.DBus.Error.ServiceUnknown"
    public static let nameHasNoOwnerName = "org.freedesktop.DBus.Error.NameHasNoOwner"
    public static let accessDeniedName = "org.freedesktop.DBus.Error.AccessDenied"

    /// Input that would be invalid on the bus (a bad name, path, signature or string),
    /// or arguments that do not match a method's signature.
    public static func invalidArgument(_ message: String) -> DBusError {
        DBusError(name: invalidArgsName, message: message)
    }

    /// A generic failure.
    public static func failed(_ message: String) -> DBusError {
        DBusError(name: failedName, message: message)
    }

    /// A method call got no reply in time.
    public static func timedOut(_ message: String) -> DBusError {
        DBusError(name: noReplyName, message: message)
    }

    /// The connection is closed.
    public static func disconnected(_ message: String = "the connection to the bus is closed") -> DBusError {
        DBusError(name: disconnectedName, message: message)
    }

    /// A message or value over a protocol limit.
    public static func limitsExceeded(_ message: String) -> DBusError {
        DBusError(name: limitsExceededName, message: message)
    }

    /// Something the connection cannot do, such as passing file descriptors over a
    /// transport that did not negotiate it.
    public static func notSupported(_ message: String) -> DBusError {
        DBusError(name: notSupportedName, message: message)
    }

    /// Takes the contents of a libdbus `DBusError` and frees it.
    static func consuming(_ error: inout CDBus.DBusError, context: String) -> DBusError {
        defer { dbus_error_free(&error) }
        guard dbus_error_is_set(&error) != 0 else { return .failed(context) }
        let name = error.name.map { String(cString: $0) } ?? failedName
        let message = error.message.map { String(cString: $0) } ?? ""
        return DBusError(name: name, message: context.isEmpty ? message : "\(context): \(message)")
    }
}
