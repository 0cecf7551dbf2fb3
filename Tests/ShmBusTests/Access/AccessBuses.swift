import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// What the access tests share on a bus: processes of other users, files they may read,
/// and the shmbus command line run as them.
class AccessBus: @unchecked Sendable {
    let directory: URL
    let address: String
    let users = UserProcesses()
    let shmbus = BuiltProducts.path("shmbus")
    private var others: [ChildProcess] = []

    init(directory: URL, address: String) {
        self.directory = directory
        self.address = address
    }

    /// The bus daemon and the registry, stopped after the users' processes.
    func adopt(_ processes: ChildProcess...) { others += processes }

    deinit {
        users.stopAll()
        for process in others.reversed() {
            process.signal(SIGTERM)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A file holding `bytes` that every user may read.
    func file(_ bytes: String) throws -> String {
        let path = directory.appendingPathComponent("input-\(UInt32.random(in: 0...UInt32.max))").path
        try bytes.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }

    /// `shmbus ARGUMENTS --bus ADDRESS` as `user` (in `sandbox`), to its end.
    func shmbus(as user: String, in sandbox: Sandbox? = nil, _ arguments: [String]) async throws -> Outcome {
        try await users.run(as: user, in: sandbox, shmbus, arguments + ["--bus", address])
    }

    /// `shmbus publish` of `bytes` under key `k` as `user`; persistent unless told.
    func publish(
        as user: String, in sandbox: Sandbox? = nil, channel: String, _ bytes: String, persistent: Bool = true, readers: String? = nil
    ) async throws -> Outcome {
        var arguments = ["publish", "--channel", channel, "--key", "k"]
        if persistent { arguments.append("--persistent") }
        if let readers { arguments += ["--readers", readers] }
        return try await shmbus(as: user, in: sandbox, arguments + [try file(bytes)])
    }

    /// `shmbus publish --hold` of `bytes` as `user`: its process (which holds the live
    /// segment until killed) and the segment's name.
    func hold(
        as user: String, in sandbox: Sandbox? = nil, channel: String, _ bytes: String, readers: String? = nil, options: [String] = []
    ) async throws -> (process: ChildProcess, segment: String) {
        var arguments = ["publish", "--channel", channel, "--key", "k", "--hold", "--bus", address] + options
        if let readers { arguments += ["--readers", readers] }
        let process = try users.spawn(as: user, in: sandbox, shmbus, arguments + [try file(bytes)])
        let line = try await process.readLine() ?? ""
        let words = line.split(separator: " ")
        guard words.count > 1, words[0] == "segment" else {
            process.signal(SIGKILL)
            let (_, err) = try await process.collectOutput()
            throw SetupFailure("publish --hold as \(user): '\(line)' \(String(decoding: err, as: UTF8.self))")
        }
        return (process, String(words[1]))
    }

    /// `shmbus cat` of key `k` as `user`.
    func cat(as user: String, in sandbox: Sandbox? = nil, channel: String) async throws -> Outcome {
        try await shmbus(as: user, in: sandbox, ["cat", "--channel", channel, "--key", "k"])
    }

    /// Raw calls as `user` (python3-dbus).
    func call(as user: String, in sandbox: Sandbox? = nil, _ calls: RawCall..., inheriting: [UnixFileDescriptor] = []) async throws
        -> [BusReply]
    {
        try await users.call(as: user, in: sandbox, on: address, calls, inheriting: inheriting)
    }

    /// The segments of `channel`, listed by `user` (who must be allowed to).
    func segments(of channel: String, as user: String) async throws -> [String] {
        let reply = try await call(as: user, .registry("ListSegments", "s", channel))[0]
        let rows = try #require(reply.value as? [[Any]], "ListSegments as \(user): \(reply)")
        return rows.compactMap { $0.first as? String }
    }
}

/// A bus configured like the system bus with the shipped policy
/// (``SystemBusPolicyTests/systemLikeBus(in:policy:daemon:)``), and a real `shmbus daemon` on it run
/// as root, as the policy and docs/SECURITY.md have it (root may own the name, and
/// only root can look into other users' processes for sandboxes). `--no-keeper`:
/// persistent segments stay in the registry after their publishers leave either way;
/// the keeper only carries them over registry restarts, which these tests do not do.
final class SystemBusRegistry: AccessBus, @unchecked Sendable {
    /// The registry's view as root (this process), for names and states.
    let root: RegistryClient

    ///
    /// With `busDaemon: .dbusBroker` the bus is dbus-broker's, with the same
    /// configuration (one file, ``SystemBusPolicyTests/systemLikeConfiguration(in:policy:)``)
    /// translated into its policy by its controller, as dbus-broker-launch does on a
    /// system bus: the shipped policy on both.
    init(daemonArguments: [String] = [], busDaemon: PrivateBus.Daemon = .dbusDaemon) async throws {
        try AccessUsers.prepare()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-access-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chmod(directory.path, 0o755)
        let (bus, address) = try await SystemBusPolicyTests.systemLikeBus(in: directory, daemon: busDaemon)
        let registry = try RegistryFixture.startDaemon(RegistryFixture.daemonExecutable, address: address, arguments: ["--no-keeper"] + daemonArguments)
        let connection = try await DBusConnection.connect(to: .address(address))
        root = RegistryClient(connection: connection)
        super.init(directory: directory, address: address)
        adopt(bus, registry)
        let deadline = ContinuousClock.now + .seconds(30)
        while try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil {
            guard ContinuousClock.now < deadline else { throw SetupFailure("the registry did not take its name") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The unique name of the connection that owns `channel` now.
    func owner(of channel: String) async throws -> String {
        try #require(try await root.channel(channel)?.owner, "no channel \(channel)")
    }
}

/// User A's own session bus, as a desktop session has it: a dbus-daemon run as A (so
/// only A's processes connect) and a `shmbus daemon` run as A on it. Sandboxed apps of
/// A reach it through its socket's directory, bound into their sandbox.
final class UserSessionBus: AccessBus, @unchecked Sendable {
    let user: String

    init(of user: String) async throws {
        try AccessUsers.prepare()
        self.user = user
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-session-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chown(directory.path, AccessUsers.uid(user), AccessUsers.gid(user))
        chmod(directory.path, 0o700)
        let config = directory.appendingPathComponent("session.conf")
        try """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <listen>unix:dir=\(directory.path)</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
                <allow own="*"/>
              </policy>
            </busconfig>
            """.write(to: config, atomically: false, encoding: .utf8)
        chmod(config.path, 0o644)
        let starter = UserProcesses()
        let bus = try starter.spawn(as: user, "dbus-daemon", ["--config-file=\(config.path)", "--nofork", "--print-address=1"], stderr: .inherit)
        let address = try await bus.readLine() ?? ""
        super.init(directory: directory, address: address)
        adopt(bus)
        guard address.hasPrefix("unix:") else { throw SetupFailure("A's dbus-daemon printed no address") }
        let registry = try users.spawn(as: user, shmbus, ["daemon", "--bus", address, "--no-keeper", "--log-level", "warning"], stderr: .inherit)
        adopt(registry)
        let waited = try await users.run(as: user, "gdbus", ["wait", "--address", address, "--timeout", "30", ShmBusProtocol.registryName])
        guard waited.status == .exited(0) else { throw SetupFailure("the registry did not take its name: \(waited)") }
    }

    /// A sandbox of app `appID` (nil: bwrap without `/.flatpak-info`) that reaches this bus.
    func sandbox(_ appID: String?) -> Sandbox {
        Sandbox(appID: appID, busDirectory: directory.path)
    }
}
