import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// dbus/org.shmbus.Registry1.conf, the policy we ship for the system bus, in a real
/// `dbus-daemon` configured like a system bus (method calls denied unless allowed): the
/// registry and a publisher's `OpenSegment` and `CurrentSegment` work through it, and
/// what it does not allow stays denied. Driven with busctl.
@Suite struct SystemBusPolicyTests {
    /// Starts dbus-daemon with a system-bus-like configuration that includes `policy`
    /// (a path in the repository; the registry's by default); returns it and its address.
    static func systemLikeBus(in directory: URL, policy relativePath: String = "dbus/org.shmbus.Registry1.conf") async throws
        -> (ChildProcess, String)
    {
        let policy = BuiltProducts.repositoryRoot.appendingPathComponent(relativePath).path
        // Our file lets root and the "shmbus" user own the registry's name; this test
        // runs the registry as whoever runs the tests.
        let user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:dir=\(directory.path)</listen>
              <auth>EXTERNAL</auth>
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
        let file = directory.appendingPathComponent("system.conf")
        try config.write(to: file, atomically: true, encoding: .utf8)
        let daemon = try ChildProcess(
            "dbus-daemon", ["--config-file=\(file.path)", "--nofork", "--print-address=1"], stdin: .null, stdout: .pipe, stderr: .null)
        let address = try await daemon.readLine() ?? ""
        try #require(address.hasPrefix("unix:"), "dbus-daemon printed no address")
        return (daemon, address)
    }

    @Test func theShippedPolicyAllowsWhatSubscribersCallAndNothingMore() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-system-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (bus, address) = try await Self.systemLikeBus(in: directory)
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
}
