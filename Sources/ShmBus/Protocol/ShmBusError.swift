import DBus

/// An error of ShmBus: from the registry (carried on the bus as `org.shmbus.Error.*`),
/// from a segment, or from the bus itself.
public struct ShmBusError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// No such channel, segment or key.
        case notFound = "NotFound"
        /// The caller may not do this (not the channel's owner, say).
        case accessDenied = "AccessDenied"
        /// An argument is malformed.
        case invalidArgument = "InvalidArgument"
        /// A segment's descriptor lacks required seals.
        case notSealed = "NotSealed"
        /// A segment's contents are invalid.
        case badSegment = "BadSegment"
        /// A per-connection or global limit was reached.
        case quotaExceeded = "QuotaExceeded"
        /// The channel already has an active segment of this owner.
        case channelBusy = "ChannelBusy"
        /// The registry is not running and could not be activated, or did not answer.
        case registryUnavailable = "RegistryUnavailable"
        /// Any other failure on the bus.
        case bus = "Bus"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The D-Bus error name of this code, `org.shmbus.Error.<Code>`.
    public var dbusName: String { "org.shmbus.Error.\(code.rawValue)" }

    /// This error as a D-Bus error reply.
    public var dbusError: DBusError { DBusError(name: dbusName, message: message) }

    /// Maps a D-Bus error: `org.shmbus.Error.*` to its code, an unreachable registry to
    /// ``Code/registryUnavailable``, anything else to ``Code/bus``.
    public init(_ error: DBusError) {
        let prefix = "org.shmbus.Error."
        if error.name.hasPrefix(prefix), let code = Code(rawValue: String(error.name.dropFirst(prefix.count))) {
            self.init(code, error.message)
        } else if error.name == DBusError.serviceUnknownName || error.name == DBusError.nameHasNoOwnerName
            || error.name.hasPrefix("org.freedesktop.DBus.Error.Spawn.")
        {
            self.init(.registryUnavailable, "the ShmBus registry is not running: \(error.message)")
        } else if error.name == DBusError.noReplyName {
            // It died (or hung) with the call in flight.
            self.init(.registryUnavailable, "the ShmBus registry did not answer: \(error.message)")
        } else {
            self.init(.bus, error.description)
        }
    }

    /// Maps any error thrown by the D-Bus layer.
    public static func wrapping(_ error: any Error) -> any Error {
        if let error = error as? DBusError { return ShmBusError(error) }
        return error
    }

    public var description: String { message }
}
