/// Declarations of the standard interfaces every exported object implements. The
/// connection dispatches them itself (libdbus answers `Peer`); these declarations
/// feed `Introspect`.
public enum StandardInterfaces {
    public static let peerName = "org.freedesktop.DBus.Peer"
    public static let introspectableName = "org.freedesktop.DBus.Introspectable"
    public static let propertiesName = "org.freedesktop.DBus.Properties"
    public static let objectManagerName = "org.freedesktop.DBus.ObjectManager"

    public static let peer = DBusInterface(peerName) {
        DBusMethod("Ping")
        DBusMethod("GetMachineId", outputs: [.init("machine_uuid", "s")])
    }

    public static let introspectable = DBusInterface(introspectableName) {
        DBusMethod("Introspect", outputs: [.init("xml_data", "s")])
    }

    public static let properties = DBusInterface(propertiesName) {
        DBusMethod(
            "Get", inputs: [.init("interface_name", "s"), .init("property_name", "s")], outputs: [.init("value", "v")])
        DBusMethod("GetAll", inputs: [.init("interface_name", "s")], outputs: [.init("props", "a{sv}")])
        DBusMethod("Set", inputs: [.init("interface_name", "s"), .init("property_name", "s"), .init("value", "v")])
        DBusSignal(
            "PropertiesChanged",
            arguments: [
                .init("interface_name", "s"), .init("changed_properties", "a{sv}"), .init("invalidated_properties", "as"),
            ])
    }

    public static let objectManager = DBusInterface(objectManagerName) {
        DBusMethod("GetManagedObjects", outputs: [.init("object_paths_interfaces_and_properties", "a{oa{sa{sv}}}")])
        DBusSignal("InterfacesAdded", arguments: [.init("object_path", "o"), .init("interfaces_and_properties", "a{sa{sv}}")])
        DBusSignal("InterfacesRemoved", arguments: [.init("object_path", "o"), .init("interfaces", "as")])
    }

    static func isStandard(_ name: String) -> Bool {
        name == peerName || name == introspectableName || name == propertiesName || name == objectManagerName
    }
}
