import DBus
import Foundation
import Glibc
import ShmBusSystem

/// A `dbus-daemon` started for this process on a private address: the real bus daemon
/// from the system, never a mock. Tests, `shmbus demo` and `shmbus bench` use it
/// when they need a bus of their own; it is not part of the D-Bus library.
///
/// The daemon runs under a tiny `sh` supervisor that holds a pipe from this process:
/// when the process ends, however it ends, the pipe closes and the supervisor stops the
/// daemon, so no bus outlives the process that started it.
public final class PrivateBus: Sendable {
    /// The address clients connect to (`unix:path=…,guid=…`).
    public let address: String
    /// The directory holding the configuration and socket.
    public let directory: URL
    private let supervisor: ChildProcess

    /// Starts `dbus-daemon` with a session-bus-like configuration: anyone on this
    /// machine's user may own names and send messages, the protocol's full message size
    /// is allowed, and `serviceDirectories` are searched for activatable services. With
    /// `everyUser`, processes of every Unix user may connect (a session bus takes only
    /// its own user's), as on a system bus, with the same open policy. `launcher` runs
    /// the daemon (`["ip", "netns", "exec", NAME]` puts it in a network namespace); it
    /// must exec it, so that stopping its process stops the daemon.
    ///
    /// With `daemon: .dbusBroker` the bus is dbus-broker's instead, with the same open
    /// policy for every user (``Daemon/dbusBroker``). Without `daemon`, it is the one
    /// `SHMBUS_PRIVATE_BUS` names (``Daemon/fromEnvironment``), or dbus-daemon where
    /// `serviceDirectories` are given: the broker's controller does no activation.
    public init(
        serviceDirectories: [String] = [], environment: [String: String] = [:], everyUser: Bool = false, launcher: [String] = [],
        daemon: Daemon? = nil
    ) throws {
        let kind = daemon ?? (serviceDirectories.isEmpty ? Daemon.fromEnvironment : .dbusDaemon)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "shmbus-bus-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("bus.conf")
        let command: [String]
        switch kind {
        case .dbusDaemon:
            guard let daemon = PrivateBus.findExecutable("dbus-daemon") else {
                throw DBusError.failed(
                    "dbus-daemon is not installed; install it with: apt-get install dbus-daemon")
            }
            try Self.configuration(socketDirectory: directory.path, serviceDirectories: serviceDirectories, everyUser: everyUser)
                .write(to: config, atomically: true, encoding: .utf8)
            command = [daemon, "--config-file=\(config.path)", "--nofork", "--print-address=1"]
        case .dbusBroker:
            command = try Self.brokerCommand(socket: directory.appendingPathComponent("bus.socket").path)
        }

        // The daemon prints its address on stdout. `read` returns when our end of
        // stdin closes (stop() or this process's death); then the daemon is stopped.
        // The daemon's own messages go to bus.log in the bus's directory. The shell
        // lets go of stdout once the daemon has it: a daemon that fails to start then
        // ends the address with end of file, instead of leaving the read below blocked
        // on the shell's copy of the pipe (a CI run hung there for an hour).
        let script = "log=$1; shift; \"$@\" </dev/null 2>\"$log\" & pid=$!; exec >/dev/null; read _; kill $pid; wait $pid"
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let process = try ChildProcess(
            "/bin/sh", ["-c", script, "sh", directory.appendingPathComponent("bus.log").path] + launcher + command,
            environment: env,
            stdin: .pipe, stdout: .pipe)

        // The first line on stdout is the address.
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while let out = process.standardOutput,
            (try? withUnsafeMutableBytes(of: &byte) { try out.read(into: $0, retryOnInterrupt: true) }) == 1,
            byte != UInt8(ascii: "\n")
        {
            line.append(byte)
        }
        let address = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard !address.isEmpty else {
            process.closeStandardInput()
            process.waitUntilExit()
            let log = (try? String(contentsOf: directory.appendingPathComponent("bus.log"), encoding: .utf8)) ?? ""
            throw DBusError.failed("\(kind) exited without printing an address (\(command.joined(separator: " "))): \(log)")
        }
        self.address = address
        self.directory = directory
        self.supervisor = process
    }

    /// The bus to pass to ``DBusConnection/connect(to:logger:)``.
    public var bus: DBusConnection.Bus { .address(address) }

    /// Stops the daemon and removes its directory. Idempotent.
    public func stop() {
        supervisor.closeStandardInput()
        supervisor.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit {
        stop()
    }

    /// The bus configuration: like the session bus, with room for the protocol limits.
    static func configuration(socketDirectory: String, serviceDirectories: [String], everyUser: Bool) -> String {
        let services = serviceDirectories.map { "  <servicedir>\(xmlEscape($0))</servicedir>\n" }.joined()
        return """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <keep_umask/>
              <listen>unix:dir=\(xmlEscape(socketDirectory))</listen>
              <auth>EXTERNAL</auth>
            \(services)  <policy context="default">
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
                <allow own="*"/>
            \(everyUser ? "    <allow user=\"*\"/>\n" : "")  </policy>
              <limit name="max_incoming_bytes">1000000000</limit>
              <limit name="max_outgoing_bytes">1000000000</limit>
              <limit name="max_message_size">134217728</limit>
              <limit name="max_incoming_unix_fds">250000000</limit>
              <limit name="max_outgoing_unix_fds">250000000</limit>
              <limit name="max_message_unix_fds">64</limit>
              <limit name="service_start_timeout">120000</limit>
              <limit name="auth_timeout">240000</limit>
              <limit name="pending_fd_timeout">150000</limit>
              <limit name="max_completed_connections">100000</limit>
              <limit name="max_incomplete_connections">10000</limit>
              <limit name="max_connections_per_user">100000</limit>
              <limit name="max_pending_service_starts">10000</limit>
              <limit name="max_names_per_connection">50000</limit>
              <limit name="max_match_rules_per_connection">50000</limit>
              <limit name="max_replies_per_connection">50000</limit>
            </busconfig>

            """
    }

    /// The first executable called `name` on `PATH` (``ChildProcess/findExecutable(_:)``).
    public static func findExecutable(_ name: String) -> String? {
        ChildProcess.findExecutable(name)
    }
}
