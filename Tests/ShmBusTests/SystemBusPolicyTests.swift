import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// dbus/org.shmbus.Registry1.conf, the policy we ship for the system bus, on a bus
/// configured like a system bus (method calls denied unless allowed), dbus-daemon and
/// dbus-broker each (``systemLikeBus(in:policy:daemon:)``): the registry and a
/// publisher's `OpenSegment` and `CurrentSegment` work through it, and what it does not
/// allow stays denied, for root (busctl) and for other Unix users (python3-dbus run as
/// them). Every denial checked here is the bus's (org.freedesktop.DBus.Error.AccessDenied,
/// the same name on both buses), and each of those calls succeeds, or reaches the callee,
/// on a bus with an open policy.
@Suite struct SystemBusPolicyTests {
    static let busDenied = "org.freedesktop.DBus.Error.AccessDenied"

    /// Writes the configuration both buses of ``systemLikeBus(in:policy:daemon:)`` take,
    /// as `system-policy.conf` in `directory`, and returns its path: `<type>system</type>`,
    /// the default-context rules of the system bus's own system.conf (everyone may
    /// connect; no one may own a name or make a method call but to the bus; signals and
    /// expected replies pass), `policy` (a path in the repository; the registry's by
    /// default) included as the system bus includes system.d/, and a user policy that
    /// lets whoever runs the tests own the registry's name. Only who may do what: what
    /// configures the dbus-daemon process (`<listen>`, `<auth>`) is in its own file, which
    /// includes this one, because dbus-broker takes its socket from its controller and
    /// authenticates EXTERNAL only, and its controller refuses what it does not translate.
    static func systemLikeConfiguration(in directory: URL, policy relativePath: String = "dbus/org.shmbus.Registry1.conf") throws -> URL {
        let policy = BuiltProducts.repositoryRoot.appendingPathComponent(relativePath).path
        // Our file lets root and the "shmbus" user own the registry's name; this test
        // runs the registry as whoever runs the tests.
        let user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <policy context="default">
                <allow user="*"/>
                <deny own="*"/>
                <deny send_type="method_call"/>
                <allow send_type="signal"/>
                <allow send_requested_reply="true" send_type="method_return"/>
                <allow send_requested_reply="true" send_type="error"/>
                <allow receive_type="method_call"/>
                <allow receive_type="method_return"/>
                <allow receive_type="error"/>
                <allow receive_type="signal"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
              </policy>
              <include>\(policy)</include>
              <policy user="\(user)">
                <allow own="org.shmbus.Registry1"/>
              </policy>
            </busconfig>
            """
        let file = directory.appendingPathComponent("system-policy.conf")
        try config.write(to: file, atomically: true, encoding: .utf8)
        chmod(file.path, 0o644)
        return file
    }

    /// Starts a bus configured like the system bus with ``systemLikeConfiguration(in:policy:)``
    /// (`policy` a path in the repository; the registry's by default), listening in
    /// `directory`, which other users may enter; returns it and its address. On
    /// `.dbusDaemon`: dbus-daemon, with a file that adds the system bus's `<auth>EXTERNAL`
    /// and a `<listen>` to that configuration. On `.dbusBroker`: dbus-broker, with that
    /// configuration translated into its policy by its controller, as dbus-broker-launch
    /// does on a system bus (``PrivateBus/brokerCommand(socket:config:)``).
    static func systemLikeBus(
        in directory: URL, policy relativePath: String = "dbus/org.shmbus.Registry1.conf", daemon: PrivateBus.Daemon = .dbusDaemon
    ) async throws -> (ChildProcess, String) {
        let configuration = try systemLikeConfiguration(in: directory, policy: relativePath)
        let bus: ChildProcess
        switch daemon {
        case .dbusDaemon:
            let config = """
                <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
                 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
                <busconfig>
                  <listen>unix:dir=\(directory.path)</listen>
                  <auth>EXTERNAL</auth>
                  <include>\(configuration.path)</include>
                </busconfig>
                """
            let file = directory.appendingPathComponent("system.conf")
            try config.write(to: file, atomically: true, encoding: .utf8)
            bus = try ChildProcess(
                "dbus-daemon", ["--config-file=\(file.path)", "--nofork", "--print-address=1"], stdin: .null, stdout: .pipe, stderr: .null)
        case .dbusBroker:
            // Its stderr is ours: a configuration the controller refuses says why there.
            let command = try PrivateBus.brokerCommand(socket: directory.appendingPathComponent("bus.socket").path, config: configuration.path)
            bus = try ChildProcess(command[0], Array(command.dropFirst()), stdin: .null, stdout: .pipe, stderr: .inherit)
        }
        let address = try await bus.readLine() ?? ""
        try #require(address.hasPrefix("unix:"), "\(daemon) printed no address")
        return (bus, address)
    }

    @Test(arguments: PrivateBus.Daemon.both)
    func theShippedPolicyAllowsWhatSubscribersCallAndNothingMore(on busDaemon: PrivateBus.Daemon) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-system-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (bus, address) = try await Self.systemLikeBus(in: directory, daemon: busDaemon)
        defer {
            bus.signal(SIGTERM)
            _ = bus.waitUntilExit()
        }
        let registry = try RegistryFixture.startDaemon(BuiltProducts.path("shmbus"), address: address)
        defer {
            registry.signal(SIGTERM)
            _ = registry.waitUntilExit()
        }
        let watcher = try await DBusConnection.connect(to: .address(address))
        let deadline = ContinuousClock.now + .seconds(30)
        while try await watcher.nameOwner(of: ShmBusProtocol.registryName) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let publisher = try await Publisher.open(channel: "system/policy", on: .address(address))
        try publisher.publish(Array("through the policy".utf8))
        let owner = publisher.connection.uniqueName
        func busctl(_ arguments: [String]) async throws -> (ChildProcess.Termination, String, String) {
            try await BuiltProducts.run("busctl", ["--address=\(address)"] + arguments)
        }

        let (listed, channels, listError) = try await busctl(["call", ShmBusProtocol.registryName, "/org/shmbus/Registry1", Registry1.name, "ListChannels"])
        #expect(listed == .exited(0) && channels.contains("system/policy"), "\(channels)\(listError)")
        let (got, current, getError) = try await busctl(["get-property", owner, "/org/shmbus/Publisher1", Publisher1.name, "CurrentSegment"])
        #expect(got == .exited(0) && current.contains(publisher.currentSegment), "\(current)\(getError)")
        let (opened, fd, openError) = try await busctl(["call", owner, "/org/shmbus/Publisher1", Publisher1.name, "OpenSegment", "s", publisher.currentSegment])
        #expect(opened == .exited(0) && fd.hasPrefix("h "), "\(fd)\(openError)")
        // Not in the policy: denied, so the rules above are what let those through.
        let (denied, _, why) = try await busctl(["call", owner, "/org/shmbus/Publisher1", "org.freedesktop.DBus.Properties", "GetAll", "s", Publisher1.name])
        #expect(denied != .exited(0) && why.contains("Access denied"), "\(why)")
        await publisher.close()
    }

    /// RequestName of `name` (do not queue): as another user, the bus's refusal.
    static func requestName(_ name: String) -> RawCall {
        RawCall(
            destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "RequestName",
            signature: "su", arguments: [name, 4])
    }

    /// Another user may own neither the registry's name nor the keeper's (both taken by
    /// root's registry and keeper here, so that the bus's answer without the policy
    /// would be "exists", not an error) nor any other name, and may not call the keeper
    /// (without the policy the keeper itself would refuse it, with org.shmbus's error);
    /// it may call the registry. Root may call the keeper.
    @Test(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot), arguments: PrivateBus.Daemon.both)
    func anotherUserMayNotOwnTheNamesNorCallTheKeeper(on busDaemon: PrivateBus.Daemon) async throws {
        let bus = try await SystemBusRegistry(busDaemon: busDaemon)
        let keeper = try ChildProcess(
            BuiltProducts.path("shmbus"), ["keeper", "--bus", bus.address, "--idle-exit", "600", "--log-level", "warning"], stdout: .null,
            stderr: .inherit)
        bus.adopt(keeper)
        let deadline = ContinuousClock.now + .seconds(30)
        while try await bus.root.connection.nameOwner(of: ShmBusProtocol.keeperName) == nil {
            guard ContinuousClock.now < deadline else { throw SetupFailure("root's keeper did not take its name") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let hand = RawCall(
            destination: ShmBusProtocol.keeperName, path: "/org/shmbus/Keeper1", interface: "org.shmbus.Keeper1", member: "Hand",
            signature: "s", arguments: [""])
        let replies = try await bus.call(
            as: AccessUsers.a, Self.requestName(ShmBusProtocol.registryName), Self.requestName(ShmBusProtocol.keeperName),
            Self.requestName("org.example.Squatter"), hand, .registry("ListChannels"))
        for (index, what) in ["own the registry's name", "own the keeper's name", "own a name", "call the keeper"].enumerated() {
            #expect(replies[index].error == Self.busDenied, "\(busDaemon): another user's attempt to \(what): \(replies[index])")
        }
        #expect(replies[4].succeeded, "\(busDaemon): another user's ListChannels: \(replies[4])")
        let (handed, out, error) = try await BuiltProducts.run("dbus-send", [
            "--bus=\(bus.address)", "--print-reply", "--dest=\(ShmBusProtocol.keeperName)", "/org/shmbus/Keeper1", "org.shmbus.Keeper1.Hand",
            "string:",
        ])
        #expect(handed == .exited(0) && out.contains("array ["), "\(busDaemon): root's Hand: \(out)\(error)")
    }

    /// Another user's publisher, as user B sees it: B may read its CurrentSegment and call
    /// its OpenSegment (which the publisher grants, by the segment's read policy), and
    /// nothing else the policy does not name: not GetAll, not Introspect.
    @Test(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot), arguments: PrivateBus.Daemon.both)
    func anotherUsersPublisherAnswersWhatThePolicyAllowsAndNothingMore(on busDaemon: PrivateBus.Daemon) async throws {
        let bus = try await SystemBusRegistry(busDaemon: busDaemon)
        let (_, segment) = try await bus.hold(as: AccessUsers.a, channel: "a/for-b", "for B", readers: "user:\(AccessUsers.b)")
        let owner = try await bus.owner(of: "a/for-b")
        func properties(_ member: String, _ signature: String, _ arguments: Any...) -> RawCall {
            RawCall(
                destination: owner, path: "/org/shmbus/Publisher1", interface: "org.freedesktop.DBus.Properties", member: member,
                signature: signature, arguments: arguments)
        }
        let replies = try await bus.call(
            as: AccessUsers.b, properties("Get", "ss", Publisher1.name, "CurrentSegment"), .publisherOpenSegment(owner: owner, segment: segment),
            properties("GetAll", "s", Publisher1.name),
            RawCall(destination: owner, path: "/org/shmbus/Publisher1", interface: "org.freedesktop.DBus.Introspectable", member: "Introspect"))
        #expect(replies[0].value as? String == segment, "\(busDaemon): B's Get of CurrentSegment: \(replies[0])")
        #expect(replies[1].succeeded, "\(busDaemon): B's OpenSegment: \(replies[1])")
        #expect(replies[2].error == Self.busDenied, "\(busDaemon): B's GetAll: \(replies[2])")
        #expect(replies[3].error == Self.busDenied, "\(busDaemon): B's Introspect: \(replies[3])")
    }
}
