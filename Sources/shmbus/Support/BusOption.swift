import ArgumentParser
import DBus

/// `--bus session|system|ADDRESS`, shared by every command.
struct BusOption: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The bus: session, system, or a D-Bus address such as unix:path=/run/user/1000/bus.",
            discussion: "The session bus is found through DBUS_SESSION_BUS_ADDRESS, as every D-Bus tool does."))
    var bus: String?

    /// The bus to use; a daemon started by D-Bus activation defaults to the bus that
    /// started it.
    func resolved(activated: Bool = false) -> DBusConnection.Bus {
        if let bus { return DBusConnection.Bus(parsing: bus) }
        if activated, let starter = ProcessEnvironment.value("DBUS_STARTER_ADDRESS") { return .address(starter) }
        return .session
    }
}

enum ProcessEnvironment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }
}

#if canImport(Glibc)
import Glibc
#endif
