import DBus

/// The names and object paths of the ShmBus bus contract (docs/PROTOCOL.md).
///
/// The interfaces themselves (``Registry1``, ``Channel1``, ``Segment1``,
/// ``Publisher1``) are generated from dbus/*.xml; what the XML cannot say (where the
/// objects live, which name the registry owns) is declared here, once.
public enum ShmBusProtocol {
    /// The registry's well-known name.
    public static let registryName = "org.shmbus.Registry1"
    public static let registryPath: ObjectPath = "/org/shmbus/Registry1"
    /// Where every publishing connection exports ``Publisher1``.
    public static let publisherPath: ObjectPath = "/org/shmbus/Publisher1"
    public static let channelsPath: ObjectPath = "/org/shmbus/Registry1/channel"
    public static let segmentsPath: ObjectPath = "/org/shmbus/Registry1/segment"
    /// The keeper's well-known name and object (``Keeper1``).
    public static let keeperName = "org.shmbus.Keeper1"
    public static let keeperPath: ObjectPath = "/org/shmbus/Keeper1"
    /// The most segments one `Keeper1.Hand` reply carries: the system bus passes at
    /// most 16 descriptors in one message.
    public static let keeperBatch = 16
    /// The protocol version the registry reports in its `Version` property.
    public static let version = "1.0"

    /// The object path of a channel (its name escaped into one path component).
    public static func channelPath(_ channel: String) -> ObjectPath {
        channelsPath.appending(escaped: channel)
    }

    /// The object path of a segment.
    public static func segmentPath(_ segment: String) -> ObjectPath {
        segmentsPath.appending(escaped: segment)
    }

    /// The registry object, through the well-known name (activating it if need be).
    public static func registry(on connection: DBusConnection) -> Registry1.Proxy {
        Registry1.Proxy(connection: connection, destination: registryName, path: registryPath)
    }

    /// The object of channel `name` in the registry.
    public static func channel(_ name: String, on connection: DBusConnection) -> Channel1.Proxy {
        Channel1.Proxy(connection: connection, destination: registryName, path: channelPath(name))
    }

    /// The object of segment `name` in the registry.
    public static func segment(_ name: String, on connection: DBusConnection) -> Segment1.Proxy {
        Segment1.Proxy(connection: connection, destination: registryName, path: segmentPath(name))
    }

    /// The keeper's object, through its well-known name (activating it if need be).
    public static func keeper(on connection: DBusConnection) -> Keeper1.Proxy {
        Keeper1.Proxy(connection: connection, destination: keeperName, path: keeperPath)
    }

    /// The `Publisher1` object of the connection `owner` (a unique name).
    public static func publisher(_ owner: String, on connection: DBusConnection) -> Publisher1.Proxy {
        Publisher1.Proxy(connection: connection, destination: owner, path: publisherPath)
    }
}
