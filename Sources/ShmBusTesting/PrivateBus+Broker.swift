import DBus
import Foundation

extension PrivateBus {
    /// Which bus daemon a ``PrivateBus`` runs.
    public enum Daemon: Sendable, CustomStringConvertible {
        /// The reference implementation, `dbus-daemon`, with the configuration of
        /// ``PrivateBus/configuration(socketDirectory:serviceDirectories:everyUser:)``.
        case dbusDaemon
        /// `dbus-broker`, the bus of Fedora, Arch and systemd-based desktops, started
        /// without systemd by `scripts/dbus-broker-bus.py`, which is its controller (as
        /// `dbus-broker-launch` is on a systemd machine). A ``PrivateBus`` gives every
        /// user an open policy there: connect, own any name, send and receive anything.
        /// (``PrivateBus/brokerCommand(socket:config:)`` with a configuration file runs
        /// that file's policy instead, translated as `dbus-broker-launch` does.)
        case dbusBroker

        /// Both, for tests that run on each.
        public static let both: [Daemon] = [.dbusDaemon, .dbusBroker]

        /// `SHMBUS_PRIVATE_BUS=dbus-broker` runs private buses on dbus-broker (to run a
        /// whole suite on it); anything else, or nothing, on dbus-daemon.
        public static var fromEnvironment: Daemon {
            ProcessInfo.processInfo.environment["SHMBUS_PRIVATE_BUS"] == "dbus-broker" ? .dbusBroker : .dbusDaemon
        }

        public var description: String {
            switch self {
            case .dbusDaemon: "dbus-daemon"
            case .dbusBroker: "dbus-broker"
            }
        }
    }

    /// The controller script, found from this source file: only tests and
    /// benchmarks run from a checkout use a dbus-broker bus.
    static let brokerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts/dbus-broker-bus.py").path

    /// Why a dbus-broker bus cannot be started here, with the command that fixes it; nil
    /// when it can (dbus-broker, python3-gi and the checkout's controller script).
    public static var brokerUnavailable: String? {
        guard findExecutable("dbus-broker") != nil else { return "dbus-broker is not installed: apt-get install dbus-broker" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return "/usr/bin/python3 is not installed" }
        guard FileManager.default.fileExists(atPath: brokerScript) else { return "\(brokerScript) is not there (not a checkout)" }
        // Debian's python3-gi, where /usr/bin/python3 finds it (no interpreter started:
        // this is asked on the test's own thread, often a thread of the concurrency pool).
        guard FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/gi/__init__.py") else {
            return "python3-gi is not installed: apt-get install python3-gi"
        }
        return nil
    }

    /// The command that starts dbus-broker listening on `socket` (which every user may
    /// connect to) and prints its address. Without `config`, with the open policy; with
    /// it, with the policy of that dbus-daemon busconfig file, translated as
    /// `dbus-broker-launch` translates it (its <policy> rules, <include>s and
    /// <includedir>s, <type>; the controller refuses, exiting 2, what it does not
    /// translate, such as <listen> or <auth>: see `scripts/dbus_broker_policy.py`).
    public static func brokerCommand(socket: String, config: String? = nil) throws -> [String] {
        if let problem = brokerUnavailable { throw DBusError.failed(problem) }
        return ["/usr/bin/python3", brokerScript] + (config.map { ["--config", $0] } ?? []) + [socket]
    }
}
