import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

// Peers for KeeperSecurityTests: buses other users may reach, real Unix users, and a
// keeper that hands back what it is made with.

extension Trait where Self == ConditionTrait {
    /// Tests that make Unix users, or own the keeper's name on a system-like bus (the
    /// shipped policy allows only root and "shmbus").
    static var asRoot: Self { .enabled(if: geteuid() == 0, "makes Unix users and owns org.shmbus.Keeper1 under the system policy (needs root)") }
}

/// A bus of one test, in a directory of its own (that other users may enter: the
/// socket is there), with a connection of the test's. `system`: SystemBusPolicyTests'
/// system-like bus with the shipped policy. Else a session-like bus every user may
/// connect to, where anyone may own any name and send anything, so that only the keeper
/// and the registry tell users apart. The default descriptor limits stay (16 a message).
struct KeeperTestBus {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-keeper-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    let daemon: ChildProcess
    let address: String
    let watcher: DBusConnection

    init(system: Bool) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        if system {
            (daemon, address) = try await SystemBusPolicyTests.systemLikeBus(in: directory)
        } else {
            let config = """
                <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
                 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
                <busconfig>
                  <type>session</type>
                  <listen>unix:dir=\(directory.path)</listen>
                  <auth>EXTERNAL</auth>
                  <policy context="default">
                    <allow user="*"/>
                    <allow send_destination="*"/>
                    <allow receive_sender="*"/>
                    <allow own="*"/>
                  </policy>
                </busconfig>
                """
            let file = directory.appendingPathComponent("shared.conf")
            try config.write(to: file, atomically: true, encoding: .utf8)
            daemon = try ChildProcess(
                "dbus-daemon", ["--config-file=\(file.path)", "--nofork", "--print-address=1"], stdin: .null, stdout: .pipe, stderr: .null)
            address = try await daemon.readLine() ?? ""
            try #require(address.hasPrefix("unix:"), "dbus-daemon printed no address")
        }
        watcher = try await DBusConnection.connect(to: .address(address))
    }

    func waitForOwner(_ name: String) async throws -> String? { try await Self.owner(of: name, on: watcher) }

    /// The owner of `name` once there is one, nil after 60 s (a daemon started on a
    /// loaded machine can take seconds to take its name; this only ends a hang).
    static func owner(of name: String, on connection: DBusConnection) async throws -> String? {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let owner = try await connection.nameOwner(of: name) { return owner }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    func stop() {
        watcher.close()
        daemon.signal(SIGTERM)
        daemon.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Hands out what it was made with; records what it is told to drop.
struct ForgedKeeper: Keeper1.Implementation {
    let segments: [KeptSegment]
    let dropped = Lock<[String]>([])

    func keep(fd: UnixFileDescriptor, record: Keeper1.Record, call: DBusMethodCall) async throws {}
    func ownerLeft(segment: String, expires: UInt64, call: DBusMethodCall) async throws {}
    func drop(segment: String, call: DBusMethodCall) async throws { dropped.withLock { $0.append(segment) } }
    func hand(after: String, call: DBusMethodCall) async throws -> [KeptSegment] { segments.filter { $0.record.segment! > after } }
    var segmentCount: UInt32 { UInt32(segments.count) }
}

/// A real Unix user made for one test (useradd) and deleted after (userdel): no home,
/// no login shell, a group of its own.
struct UnixUser {
    let name = "shmkt\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    let uid: UInt32

    init() throws {
        let made = try ChildProcess(
            "useradd", ["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name], stdout: .null, stderr: .inherit)
        try #require(made.waitUntilExit() == .exited(0), "useradd \(name) failed")
        uid = try #require(getpwnam(name)?.pointee.pw_uid, "useradd made no user \(name)")
    }

    func delete() {
        _ = try? ChildProcess("userdel", [name], stdout: .null, stderr: .inherit).waitUntilExit()
    }

    /// `executable arguments`, as this user (setpriv: its uid, its group, no others).
    private func command(_ executable: String, _ arguments: [String]) -> [String] {
        let path = executable.contains("/") ? executable : ChildProcess.findExecutable(executable) ?? executable
        return ["--reuid=\(name)", "--regid=\(name)", "--clear-groups", "--", path] + arguments
    }

    func run(_ executable: String, _ arguments: [String]) async throws -> (status: ChildProcess.Termination, stdout: String, stderr: String) {
        try await BuiltProducts.run("setpriv", command(executable, arguments))
    }

    func spawn(_ executable: String, _ arguments: [String]) throws -> ChildProcess {
        try ChildProcess("setpriv", command(executable, arguments), stdout: .null, stderr: .inherit)
    }
}
