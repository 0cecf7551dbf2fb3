import DBus
import ShmBusSystem
import TestSupport
import Testing

/// The Swift service through GLib's `gdbus`: calls (its GVariant text output, matched
/// exactly), recursive introspection, and properties.
@Suite struct GdbusInteropTests {
    /// The arguments of `gdbus call`; the method's arguments follow `--`, so that
    /// negative numbers are not taken for options.
    static func gdbus(_ service: InteropService, path: ObjectPath? = nil, _ method: String, _ arguments: [String] = [])
        throws -> [String]
    {
        [
            "call", "--address", try InteropService.address, "--dest", service.name, "--object-path",
            (path ?? service.root).rawValue, "--timeout", "\(InteropTool.replyTimeoutSeconds)", "--method", method, "--",
        ] + arguments
    }

    func call(_ service: InteropService, path: ObjectPath? = nil, _ method: String, _ arguments: [String] = [])
        async throws -> String
    {
        InteropTool.trimmed(try await InteropTool.output("gdbus", try Self.gdbus(service, path: path, method, arguments)))
    }

    @Test func gdbusCallsMethodsOfManyTypes() async throws {
        let service = try await InteropService.start()
        let i = InteropService.interfaceName
        #expect(try await call(service, "\(i).Concat", ["'héllo'", "' wörld ✓'"]) == "('héllo wörld ✓',)")
        #expect(
            try await call(
                service, "\(i).Numbers",
                ["250", "true", "-5", "7", "-100000", "4000000000", "-9000000000", "18000000000000000000", "2.5"])
                == "(byte 0xfb, false, int16 -6, uint16 8, -200000, uint32 4000000001, int64 -9000000001, "
                + "uint64 17999999999999999999, 5.0)")
        let inspected = try await call(
            service, "\(i).Inspect",
            [
                "{'h': <[byte 0x01, 0x02]>, 'a': <int32 5>, 'b': <'x'>, 'c': <['p', 'q']>, 'd': <(1, 'z')>, "
                    + "'e': <uint64 7>, 'f': <objectpath '/x/y'>, 'g': <{'k': <true>}>}"
            ])
        #expect(
            inspected
                == #"({'a': 'i 5', 'b': "s 'x'", 'c': "as ['p','q']", 'd': "(is) (1,'z')", 'e': 't 7', 'f': 'o /x/y', "#
                + #"'g': "a{sv} {'k':<true>}", 'h': 'ay [1,2]'},)"#)
        #expect(
            try await call(service, "\(i).Options")
                == "({'name': <'shmbus'>, 'count': <uint32 3>, 'ratio': <0.25>, 'tags': <['x', 'y']>, 'point': <(3, -4)>, "
                + "'nested': <{'deep': <true>}>, 'path': <objectpath '/org/shmbus'>, 'blob': <[byte 0x01, 0x02, 0xff]>},)")
        #expect(try await call(service, "\(i).Swap", ["('abc', 7)"]) == "((7, 'abc'),)")
        #expect(try await call(service, "\(i).Points", ["[(1, 2), (3, 4), (-10, 5)]"]) == "([(2, 3), (4, 5), (-9, 6)], int64 5)")
        let xor = try await call(service, "\(i).Xor", ["[0, 1, 255, 7]", "90"])
        #expect(xor == "([byte 0x5a, 0x5b, 0xa5, 0x5d], uint32 263)")
        // gdbus's bytestring syntax: b'SHM' is S, H, M, NUL; XORed with 0 it comes back
        // the same, and gdbus prints it as a bytestring again.
        #expect(try await call(service, "\(i).Xor", ["b'SHM'", "0"]) == "(b'SHM', uint32 232)")
        #expect(try await call(service, "\(i).Xor", ["b'SHM'", "32"]) == "([byte 0x73, 0x68, 0x6d, 0x20], uint32 232)")
        #expect(
            try await call(service, "\(i).PathAndSignature", ["'/a/b'", "'a{sv}s'"])
                == "(objectpath '/a/b/item', signature 'a(a{sv}s)', uint32 2)")
        #expect(try await call(service, "\(i).Reverse", ["['x', 'y', 'z']"]) == "(['z', 'y', 'x'],)")
        #expect(
            try await call(service, path: service.children[2], "\(InteropService.childInterfaceName).Hello")
                == "('child 2 at \(service.children[2])',)")
    }

    @Test func gdbusIntrospectRecursesThroughTheTree() async throws {
        let service = try await InteropService.start()
        // The root: standard interfaces, ours with its members, properties with values.
        let expected = [
            "interface org.freedesktop.DBus.ObjectManager {", "interface org.freedesktop.DBus.Properties {",
            "interface org.freedesktop.DBus.Introspectable {", "interface org.freedesktop.DBus.Peer {",
            "interface \(InteropService.interfaceName) {", "interface \(InteropService.childInterfaceName) {",
            "Concat(in  s a,", "in  s b,", "out s joined);",
            "XorFd(in  h fd,", "out h fd,", "PathAndSignature(in  o path,", "in  g signature,",
            "Inspect(in  a{sv} options,", "out a{ss} described);",
            "Changed(s what,", "u serial);",
            "readonly s Version = 'interop-1.0';", "readwrite s Label = 'initial';", "readwrite as Tags = ['a', 'b'];",
            "readwrite d Ratio = 0.5;", "readonly u ChildCount = 3;",
            "readonly u Index = 0;", "readonly u Index = 2;", "readwrite s Name = 'third';",
        ]
        // gdbus introspect has no --timeout: it waits a fixed 3 s for each Introspect,
        // GetAll and Get, and prints what it got (a property whose value did not come
        // in time without it, a node whose Introspect did not come with an error). The
        // service answers in milliseconds, but it runs in this test process, which
        // shares two cores with the whole suite; so an output that lacks something is
        // taken again, a few times, before it counts. A service that answers wrong
        // fails every time.
        var (status, out, err) = (ChildProcess.Termination.exited(-1), "", "")
        var lines: [String] = []
        for attempt in 1...5 {
            (status, out, err) = try await BuiltProducts.run(
                "gdbus",
                [
                    "introspect", "--address", try InteropService.address, "--dest", service.name, "--object-path",
                    service.root.rawValue, "--recurse",
                ])
            lines = out.split(separator: "\n").map { InteropTool.trimmed(String($0)) }
            let complete = status == .exited(0) && lines.first == "node \(service.root) {" && expected.allSatisfy(lines.contains)
                && service.children.allSatisfy { lines.contains("node \($0) {") }
            if complete { break }
            print("gdbus introspect, attempt \(attempt): incomplete output (gdbus waits 3 s per call), taken again: \(status) \(err)")
        }
        #expect(status == .exited(0), "gdbus introspect \(status): \(err)")
        #expect(lines.first == "node \(service.root) {")
        for line in expected {
            #expect(lines.contains(line), "missing '\(line)' in:\n\(out)")
        }
        // Every child, including the one below an intermediate node.
        for child in service.children {
            #expect(lines.contains("node \(child) {"), "no node \(child) in:\n\(out)")
        }
        #expect(lines.contains("node \(service.root.appending(escaped: "group")) {"))
        #expect(lines.filter { $0 == "interface \(InteropService.childInterfaceName) {" }.count == 3)
    }

    @Test func gdbusGetsAndSetsProperties() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let i = InteropService.interfaceName
        let p = StandardInterfaces.propertiesName
        let changes = try await client.signals(
            matching: MatchRule(
                sender: service.name, interface: p, member: "PropertiesChanged", path: service.root))

        #expect(try await call(service, "\(p).Get", [i, "Label"]) == "(<'initial'>,)")
        #expect(try await call(service, "\(p).Get", [i, "Version"]) == "(<'interop-1.0'>,)")
        #expect(try await call(service, "\(p).Set", [i, "Label", "<'from gdbus'>"]) == "()")
        #expect(try await call(service, "\(p).Set", [i, "Tags", "<['p', 'q', 'r']>"]) == "()")
        #expect(try await call(service, "\(p).Set", [i, "Ratio", "<2.75>"]) == "()")

        // The sets took effect: seen from a Swift client, in the service's state, and in
        // gdbus's own GetAll.
        #expect(try await service.swiftProperty(client, "Label") == .string("from gdbus"))
        #expect(try await service.swiftProperty(client, "Tags") == .array(.string, [.string("p"), .string("q"), .string("r")]))
        #expect(try await service.swiftProperty(client, "Ratio") == .double(2.75))
        #expect(service.state.label.withLock { $0 } == "from gdbus")
        #expect(
            try await call(service, "\(p).GetAll", [i])
                == "({'Version': <'interop-1.0'>, 'ChildCount': <uint32 3>, 'Label': <'from gdbus'>, 'Ratio': <2.75>, "
                + "'Tags': <['p', 'q', 'r']>},)")

        // A child's property, and the PropertiesChanged the root's first Set emitted.
        let child = service.children[1]
        #expect(try await call(service, path: child, "\(p).Set", [InteropService.childInterfaceName, "Name", "<'renamed'>"]) == "()")
        #expect(
            try await service.swiftProperty(client, "Name", path: child, interface: InteropService.childInterfaceName)
                == .string("renamed"))
        let signals = try await SignalTests.collect(changes, count: 3)
        #expect(
            signals.map(\.body) == [
                [.string(i), .dictionary(key: .string, value: .variant, [.init(key: .string("Label"), value: .variant(.string("from gdbus")))]), .array(.string, [])],
                [.string(i), .dictionary(key: .string, value: .variant, [.init(key: .string("Tags"), value: .variant(.array(.string, [.string("p"), .string("q"), .string("r")])))]), .array(.string, [])],
                [.string(i), .dictionary(key: .string, value: .variant, [.init(key: .string("Ratio"), value: .variant(.double(2.75)))]), .array(.string, [])],
            ])

        // A read-only property refuses, by name.
        let err = try await InteropTool.failure("gdbus", try Self.gdbus(service, "\(p).Set", [i, "Version", "<'x'>"]))
        #expect(err.contains("GDBus.Error:org.freedesktop.DBus.Error.PropertyReadOnly: Property 'Version' is read-only"), "\(err)")
        #expect(try await service.swiftProperty(client, "Version") == .string("interop-1.0"))
    }
}
