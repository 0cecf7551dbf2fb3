import DBus
import Foundation
import SharedSegments
import ShmBus
import ShmBusTesting
import TestSupport
import Testing

/// The registry through tools no one here wrote: busctl, gdbus, dbus-send, python3-dbus.
@Suite struct RegistryInteropTests {
    static let python = "/usr/bin/python3"

    /// A registry with one channel holding a keyed chunk, registered by this process.
    static func populated(on bus: PrivateBus.Daemon? = nil) async throws -> (RegistryFixture, RegistryClient, ChannelWriter, String) {
        let fixture = try await RegistryFixture(busDaemon: bus)
        let client = try await fixture.client()
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let writer = try makeSegment(channel: "interop/cam", chunks: [("frame", payload), ("meta", Array("{\"w\":640}".utf8))])
        let segment = try await client.registerSegment(channel: "interop/cam", fd: writer.current.fileDescriptor).segment
        return (fixture, client, writer, segment)
    }

    func tool(_ fixture: RegistryFixture, _ executable: String, _ arguments: [String]) async throws -> String {
        let (status, out, err) = try await BuiltProducts.run(executable, arguments)
        #expect(status == .exited(0), "\(executable) \(arguments): \(err)")
        return out
    }

    @Test(arguments: PrivateBus.Daemon.both)
    func busctlCallsEveryFdLessMethod(on bus: PrivateBus.Daemon) async throws {
        let (fixture, client, writer, segment) = try await Self.populated(on: bus)
        let base = ["--address=\(fixture.address)", "--json=short", "call", ShmBusProtocol.registryName, "/org/shmbus/Registry1", Registry1.name]
        func json(_ out: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        }
        let channels = try json(try await tool(fixture, "busctl", base + ["ListChannels"]))
        #expect(channels["type"] as? String == "a(sssttt)")
        let rows = try #require((channels["data"] as? [[Any]])?.first as? [[Any]])
        #expect(rows.first?[0] as? String == "interop/cam")
        #expect(rows.first?[1] as? String == client.connection.uniqueName)
        #expect(rows.first?[2] as? String == segment)

        let segments = try json(try await tool(fixture, "busctl", base + ["ListSegments", "s", ""]))
        #expect(segments["type"] as? String == "a(ssottttsbt)")
        let seg = try #require(((segments["data"] as? [[Any]])?.first as? [[Any]])?.first)
        #expect(seg[0] as? String == segment)
        #expect(seg[2] as? String == ShmBusProtocol.segmentPath(segment).rawValue)
        #expect(seg[7] as? String == "active")

        let lookup = try json(try await tool(fixture, "busctl", base + ["Lookup", "ss", "interop/cam", "frame"]))
        let data = try #require(lookup["data"] as? [Any])
        #expect(data[0] as? String == segment)
        #expect((data[2] as? NSNumber)?.intValue == 5000)
        #expect((data[3] as? NSNumber)?.intValue == 1)

        // Errors come out as their names.
        let (status, _, err) = try await BuiltProducts.run("busctl", base + ["Lookup", "ss", "interop/cam", "nope"])
        #expect(status != .exited(0))
        #expect(err.contains("no live chunk with key 'nope'"))
        let (wrong, _, wrongErr) = try await BuiltProducts.run("busctl", base + ["Lookup", "s", "interop/cam"])
        #expect(wrong != .exited(0))
        #expect(wrongErr.contains("signature 'ss', got 's'"), "\(wrongErr)")

        let tree = try await tool(fixture, "busctl", ["--address=\(fixture.address)", "tree", ShmBusProtocol.registryName])
        #expect(tree.contains("/org/shmbus/Registry1/channel/interop_2fcam"))
        #expect(tree.contains("/org/shmbus/Registry1/segment/\(ObjectPath.escape(segment))"))
        let property = try await tool(fixture, "busctl", [
            "--address=\(fixture.address)", "get-property", ShmBusProtocol.registryName, ShmBusProtocol.segmentPath(segment).rawValue,
            Segment1.name, "Channel",
        ])
        #expect(property.trimmingCharacters(in: .whitespacesAndNewlines) == "s \"interop/cam\"")
        let introspect = try await tool(fixture, "busctl", ["--address=\(fixture.address)", "introspect", ShmBusProtocol.registryName, "/org/shmbus/Registry1"])
        #expect(introspect.contains(".RegisterSegment") && introspect.contains("sha{sv}") && introspect.contains(".SegmentReplaced"))
        withExtendedLifetime((client, writer)) {}
    }

    @Test func gdbusAndDbusSendSeeTheSameRegistry() async throws {
        let (fixture, client, writer, segment) = try await Self.populated()
        let gdbus = try await tool(fixture, "gdbus", [
            "call", "--address", fixture.address, "--dest", ShmBusProtocol.registryName, "--object-path", "/org/shmbus/Registry1",
            "--method", "org.shmbus.Registry1.ListSegments", "interop/cam",
        ])
        #expect(gdbus.contains("'\(segment)', 'interop/cam', objectpath '\(ShmBusProtocol.segmentPath(segment))'"))
        let managed = try await tool(fixture, "gdbus", [
            "call", "--address", fixture.address, "--dest", ShmBusProtocol.registryName, "--object-path", "/org/shmbus/Registry1",
            "--method", "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        ])
        #expect(managed.contains("'org.shmbus.Channel1'") && managed.contains("'CurrentSegment': <'\(segment)'>"))
        let introspection = try await tool(fixture, "gdbus", [
            "introspect", "--address", fixture.address, "--dest", ShmBusProtocol.registryName, "--object-path", "/org/shmbus/Registry1", "--recurse",
        ])
        #expect(introspection.contains("interface org.shmbus.Segment1"))
        #expect(introspection.contains("readonly t Capacity"))
        let send = try await tool(fixture, "dbus-send", [
            "--bus=\(fixture.address)", "--print-reply", "--dest=\(ShmBusProtocol.registryName)", "/org/shmbus/Registry1",
            "org.shmbus.Registry1.Lookup", "string:interop/cam", "string:meta",
        ])
        #expect(send.contains("string \"\(segment)\"") && send.contains("uint64 9\n"))  // {"w":640} is 9 bytes
        withExtendedLifetime((client, writer)) {}
    }

    @Test func pythonOpensASegmentMapsItAndReadsAChunk() async throws {
        let (fixture, client, writer, segment) = try await Self.populated()
        let script = """
            import dbus, mmap, hashlib, sys
            bus = dbus.bus.BusConnection(sys.argv[1])
            registry = dbus.Interface(bus.get_object("org.shmbus.Registry1", "/org/shmbus/Registry1"), "org.shmbus.Registry1")
            segment, offset, length, sequence = registry.Lookup("interop/cam", "frame")
            fd, info = registry.OpenSegment(segment)
            m = mmap.mmap(fd.take(), 0, mmap.MAP_SHARED, mmap.PROT_READ)
            print(segment, info["channel"], int(length), int(sequence), m[offset:offset + length].hex())
            try:
                registry.OpenSegment("0" * 32)
            except dbus.DBusException as e:
                print(e.get_dbus_name())
            """
        let out = try await tool(fixture, Self.python, ["-c", script, fixture.address])
        let expected = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let hex = expected.map { String(format: "%02x", $0) }.joined()
        #expect(out.contains("\(segment) interop/cam 5000 1 \(hex)"))
        #expect(out.contains("org.shmbus.Error.NotFound"))
        withExtendedLifetime((client, writer)) {}
    }

    @Test func pythonGetsNamedErrorsForBadDescriptors() async throws {
        let fixture = try await RegistryFixture()
        let script = """
            import dbus, os, fcntl, sys
            bus = dbus.bus.BusConnection(sys.argv[1])
            registry = dbus.Interface(bus.get_object("org.shmbus.Registry1", "/org/shmbus/Registry1"), "org.shmbus.Registry1")
            fd = os.memfd_create("py", os.MFD_ALLOW_SEALING)
            os.ftruncate(fd, 65536)
            for seals in (0, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL):
                if seals: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
                try:
                    registry.RegisterSegment("py", dbus.types.UnixFd(fd), dbus.Dictionary({}, signature="sv"))
                except dbus.DBusException as e:
                    print(e.get_dbus_name())
            """
        let out = try await tool(fixture, Self.python, ["-c", script, fixture.address])
        #expect(out.split(separator: "\n") == ["org.shmbus.Error.NotSealed", "org.shmbus.Error.NotSealed"])
    }
}

