import DBus

/// Names, paths and interface declarations of the ShmBus bus contract
/// (docs/PROTOCOL.md).
///
/// The declarations are built from the introspection XML in `dbus/`, compiled into
/// the binary, so that the files stay the single source of truth.
public enum ShmBusProtocol {
    /// The registry's well-known name.
    public static let registryName = "org.shmbus.Registry1"
    public static let registryPath: ObjectPath = "/org/shmbus/Registry1"
    public static let registryInterfaceName = "org.shmbus.Registry1"
    public static let channelInterfaceName = "org.shmbus.Channel1"
    public static let segmentInterfaceName = "org.shmbus.Segment1"
    public static let publisherInterfaceName = "org.shmbus.Publisher1"
    /// Where every publishing connection exports `org.shmbus.Publisher1`.
    public static let publisherPath: ObjectPath = "/org/shmbus/Publisher1"
    public static let channelsPath: ObjectPath = "/org/shmbus/Registry1/channel"
    public static let segmentsPath: ObjectPath = "/org/shmbus/Registry1/segment"
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

    /// `dbus/org.shmbus.Registry1.xml`, as compiled in.
    public static var registryXML: String { String(decoding: PackageResources.org_shmbus_Registry1_xml, as: UTF8.self) }
    /// `dbus/org.shmbus.Publisher1.xml`, as compiled in.
    public static var publisherXML: String { String(decoding: PackageResources.org_shmbus_Publisher1_xml, as: UTF8.self) }

    private static let registryIntrospection = Result { () throws(DBusError) in try DBusIntrospection(xml: registryXML) }
    private static let publisherIntrospection = Result { () throws(DBusError) in try DBusIntrospection(xml: publisherXML) }

    private static func declaration(_ name: String, in parsed: Result<DBusIntrospection, DBusError>) throws(DBusError) -> DBusInterface {
        guard let interface = try parsed.get().interface(named: name) else {
            throw .failed("the compiled-in introspection XML lacks \(name)")
        }
        return interface
    }

    /// `org.shmbus.Registry1`, without handlers.
    public static func registryInterface() throws(DBusError) -> DBusInterface {
        try declaration(registryInterfaceName, in: registryIntrospection)
    }

    /// `org.shmbus.Channel1`, without accessors.
    public static func channelInterface() throws(DBusError) -> DBusInterface {
        try declaration(channelInterfaceName, in: registryIntrospection)
    }

    /// `org.shmbus.Segment1`, without accessors.
    public static func segmentInterface() throws(DBusError) -> DBusInterface {
        try declaration(segmentInterfaceName, in: registryIntrospection)
    }

    /// `org.shmbus.Publisher1`.
    public static func publisherInterface() throws(DBusError) -> DBusInterface {
        try declaration(publisherInterfaceName, in: publisherIntrospection)
    }
}
