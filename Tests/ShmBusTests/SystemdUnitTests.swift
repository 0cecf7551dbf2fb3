import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// `shmbus install-service --systemd`: the user units and the activation files that
/// point at them. This machine's PID 1 is not systemd, so no unit is started here: the
/// files are checked as written, by `systemd-analyze verify` where it is installed, and
/// activation is shown to work, unchanged, on a bus without systemd.
@Suite struct SystemdUnitTests {
    final class Installed: Sendable {
        let root: URL
        var services: URL { root.appendingPathComponent("services") }
        var units: URL { root.appendingPathComponent("units") }
        let output: String

        init() async throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-systemd-\(UInt32.random(in: 0...UInt32.max))")
            let shmbus = BuiltProducts.path("shmbus")
            let (status, out, err) = try await BuiltProducts.run(shmbus, [
                "install-service", "--systemd", "--directory", root.appendingPathComponent("services").path,
                "--systemd-directory", root.appendingPathComponent("units").path, "--exec", shmbus,
            ])
            #expect(status == .exited(0), "\(err)")
            output = out
        }

        deinit { try? FileManager.default.removeItem(at: root) }

        func file(_ directory: URL, _ name: String) throws -> [String] {
            try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8).components(separatedBy: "\n")
        }
    }

    @Test func theUnitsAreDBusServicesAndTheActivationFilesPointAtThem() async throws {
        let installed = try await Installed()
        let shmbus = BuiltProducts.path("shmbus")
        let registry = try installed.file(installed.units, "shmbus-registry.service")
        for line in ["[Service]", "Type=dbus", "BusName=org.shmbus.Registry1", "ExecStart=\(shmbus) daemon"] {
            #expect(registry.contains(line), "\(line)")
        }
        let keeper = try installed.file(installed.units, "shmbus-keeper.service")
        for line in ["Type=dbus", "BusName=org.shmbus.Keeper1", "ExecStart=\(shmbus) keeper"] { #expect(keeper.contains(line), "\(line)") }
        let activation = try installed.file(installed.services, "org.shmbus.Registry1.service")
        for line in ["[D-BUS Service]", "Name=org.shmbus.Registry1", "Exec=\(shmbus) daemon", "SystemdService=shmbus-registry.service"] {
            #expect(activation.contains(line), "\(line)")
        }
        let keeperActivation = try installed.file(installed.services, "org.shmbus.Keeper1.service")
        #expect(keeperActivation.contains("SystemdService=shmbus-keeper.service"))
        #expect(installed.output.contains("SystemdService=shmbus-registry.service"))

        // Without --systemd nothing names systemd, as before.
        let plain = installed.root.appendingPathComponent("plain")
        let (status, _, err) = try await BuiltProducts.run(shmbus, ["install-service", "--directory", plain.path, "--exec", shmbus])
        #expect(status == .exited(0), "\(err)")
        #expect(!(try installed.file(plain, "org.shmbus.Registry1.service")).contains { $0.hasPrefix("SystemdService=") })
    }

    /// systemd's own reading of the units (user mode, with a runtime directory of its
    /// own: no user manager runs here). Debian's `systemd` package, which ensure-deps
    /// installs for busctl, brings it.
    @Test(.enabled(if: ChildProcess.findExecutable("systemd-analyze") != nil))
    func systemdAnalyzeVerifiesTheUnits() async throws {
        let installed = try await Installed()
        let runtime = installed.root.appendingPathComponent("runtime")
        try FileManager.default.createDirectory(at: runtime, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_RUNTIME_DIR"] = runtime.path
        let units = ["shmbus-registry.service", "shmbus-keeper.service"].map { installed.units.appendingPathComponent($0).path }
        let (status, out, err) = try await BuiltProducts.run(
            "systemd-analyze", ["--user", "verify", "--man=no"] + units, environment: environment)
        #expect(status == .exited(0), "\(out)\(err)")
        #expect(err.isEmpty, "no warnings: \(err)")
    }

    /// A bus without systemd activation (this private dbus-daemon; any bus where PID 1 is
    /// not systemd) ignores SystemdService= and starts Exec=: the registry on the first
    /// call, the keeper on the first persistent publish.
    @Test(.timeLimit(.minutes(5))) func activationWithoutSystemdStillWorks() async throws {
        let installed = try await Installed()
        let fixture = try await RegistryFixture(startDaemon: false, serviceDirectories: [installed.services.path])
        let client = try await fixture.client()
        #expect(try await client.connection.nameOwner(of: ShmBusProtocol.registryName) == nil)
        #expect(try await client.channels().isEmpty, "this call starts the registry")
        #expect(try await client.connection.nameOwner(of: ShmBusProtocol.registryName) != nil)

        var options = Publisher.Options()
        options.persistent = true
        let publisher = try await Publisher.open(channel: "systemd/kept", on: .address(fixture.address), options: options)
        try publisher.publish(Array("kept".utf8), key: "k")
        await publisher.flush()
        let deadline = ContinuousClock.now + .seconds(60)
        while try await client.connection.nameOwner(of: ShmBusProtocol.keeperName) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        await publisher.close()
        let registry = try await Self.process(of: ShmBusProtocol.registryName, client.connection)
        let keeper = try await Self.process(of: ShmBusProtocol.keeperName, client.connection)
        // Activated by the bus from Exec=, not spawned by the registry (its fallback).
        let stat = try String(contentsOfFile: "/proc/\(keeper)/stat", encoding: .utf8)
        let parent = stat.split(separator: ")").last?.split(separator: " ").dropFirst().first.flatMap { Int32($0) }
        #expect(parent != nil && parent != registry, "the keeper's parent is the bus, not the registry (\(stat))")
        // The activated processes are the bus's children; stop them as a service manager would.
        kill(registry, SIGTERM)
        kill(keeper, SIGTERM)
    }

    static func process(of name: String, _ connection: DBusConnection) async throws -> pid_t {
        let owner = try #require(try await connection.nameOwner(of: name), "\(name) has an owner")
        let pid = try await connection.call(
            destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
            method: "GetConnectionUnixProcessID", [.string(owner)]
        ).decode(UInt32.self)
        return pid_t(pid)
    }
}
