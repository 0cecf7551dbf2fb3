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

extension BusOption {
    /// The `--bus` argument that names `bus` for another shmbus process.
    static func argument(for bus: DBusConnection.Bus) -> String {
        switch bus {
        case .session: "session"
        case .system: "system"
        case .address(let address): address
        }
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
