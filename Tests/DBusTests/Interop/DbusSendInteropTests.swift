import DBus
import TestSupport
import Testing

/// The Swift service through libdbus's own `dbus-send`: a method-call round trip
/// (its `--print-reply` text, matched line by line), properties, errors, and a signal
/// that `dbus-send` emits and a Swift stream receives.
@Suite struct DbusSendInteropTests {
    static func arguments(_ service: InteropService, path: ObjectPath? = nil, _ method: String, _ arguments: [String]) throws
        -> [String]
    {
        [
            "--bus=\(try InteropService.address)", "--print-reply", "--reply-timeout=\(InteropTool.replyTimeoutSeconds * 1000)", "--dest=\(service.name)",
            (path ?? service.root).rawValue, method,
        ] + arguments
    }

    /// The reply's values: the `--print-reply` lines after the `method return …`
    /// header, trimmed, runs of spaces collapsed.
    func call(_ service: InteropService, path: ObjectPath? = nil, _ method: String, _ arguments: [String] = [])
        async throws -> [String]
    {
        let out = try await InteropTool.output("dbus-send", try Self.arguments(service, path: path, method, arguments))
        let lines = out.split(separator: "\n").map {
            InteropTool.trimmed(String($0)).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        }
        #expect(lines.first?.hasPrefix("method return ") == true, "\(out)")
        #expect(lines.first?.contains("sender=\(service.connection.uniqueName) ") == true, "\(out)")
        return Array(lines.dropFirst())
    }

    @Test func dbusSendRoundTrip() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let i = InteropService.interfaceName
        #expect(try await call(service, "\(i).Concat", ["string:héllo", "string:-wörld ✓"]) == ["string \"héllo-wörld ✓\""])
        #expect(
            try await call(
                service, "\(i).Numbers",
                [
                    "byte:250", "boolean:true", "int16:-5", "uint16:7", "int32:-100000", "uint32:4000000000",
                    "int64:-9000000000", "uint64:18000000000000000000", "double:2.5",
                ])
                == [
                    "byte 251", "boolean false", "int16 -6", "uint16 8", "int32 -200000", "uint32 4000000001",
                    "int64 -9000000001", "uint64 17999999999999999999", "double 5",
                ])
        #expect(
            try await call(service, "\(i).Reverse", ["array:string:x,y,z"])
                == ["array [", "string \"z\"", "string \"y\"", "string \"x\"", "]"])
        #expect(
            try await call(service, "\(i).Xor", ["array:byte:0,1,255,90", "byte:90"])
                == ["array of bytes [", "5a 5b a5 00", "]", "uint32 346"])
        // dbus-send has no syntax for 'g' arguments; 'o' both ways.
        #expect(try await call(service, "\(i).PathInfo", ["objpath:/a/b/c"]) == ["object path \"/a/b\"", "uint32 3"])
        let notASignature = try await InteropTool.failure(
            "dbus-send", try Self.arguments(service, "\(i).PathAndSignature", ["objpath:/a/b", "string:a{sv}s"]))
        #expect(
            InteropTool.trimmed(notASignature)
                == "Error org.freedesktop.DBus.Error.InvalidArgs: PathAndSignature takes arguments of signature 'og', got 'os'")
        #expect(
            try await call(service, path: service.children[0], "\(InteropService.childInterfaceName).Hello")
                == ["string \"child 0 at \(service.children[0])\""])

        // Properties: Set through a variant, then Get, and a Swift client agrees.
        let p = StandardInterfaces.propertiesName
        #expect(try await call(service, "\(p).Set", ["string:\(i)", "string:Label", "variant:string:from dbus-send"]) == [])
        #expect(try await call(service, "\(p).Get", ["string:\(i)", "string:Label"]) == ["variant string \"from dbus-send\""])
        #expect(try await call(service, "\(p).Get", ["string:\(i)", "string:Ratio"]) == ["variant double 0.5"])
        #expect(try await service.swiftProperty(client, "Label") == .string("from dbus-send"))

        // An a{si} where a{sv} is declared, and an unknown method: named errors.
        let wrong = try await InteropTool.failure("dbus-send", try Self.arguments(service, "\(i).Inspect", ["dict:string:int32:one,1"]))
        #expect(
            InteropTool.trimmed(wrong)
                == "Error org.freedesktop.DBus.Error.InvalidArgs: Inspect takes arguments of signature 'a{sv}', got 'a{si}'")
        let unknown = try await InteropTool.failure("dbus-send", try Self.arguments(service, "\(i).Nope", []))
        #expect(unknown.contains("Error org.freedesktop.DBus.Error.UnknownMethod: No such method 'Nope'"), "\(unknown)")
        #expect(try await call(service, "\(i).Concat", ["string:a", "string:b"]) == ["string \"ab\""])
    }

    @Test func dbusSendSignalReachesASwiftStreamWithItsUniqueName() async throws {
        let receiver = try await TestBus.connect()
        let suffix = TestBus.uniqueSuffix()
        let path = ObjectPath("/org/shmbus/test/interop/signal").appending(escaped: suffix)
        let interface = "org.shmbus.Test.InteropSignal1"
        let owners = try await receiver.signals(
            matching: MatchRule(sender: "org.freedesktop.DBus", interface: "org.freedesktop.DBus", member: "NameOwnerChanged"))
        let stream = try await receiver.signals(matching: MatchRule(interface: interface, member: "Ping", path: path))
        _ = try await InteropTool.output(
            "dbus-send",
            [
                "--bus=\(try InteropService.address)", "--type=signal", path.rawValue, "\(interface).Ping", "string:hello \(suffix)",
                "uint32:7", "array:string:a,b",
            ])
        let signal = try #require(try await SignalTests.collect(stream, count: 1).first)
        #expect(signal.body == [.string("hello \(suffix)"), .uint32(7), .array(.string, [.string("a"), .string("b")])])
        #expect(signal.path == path && signal.interface == interface && signal.member == "Ping")
        let sender = try #require(signal.sender)
        #expect(sender.hasPrefix(":"))
        #expect(sender != receiver.uniqueName)

        // The sender was dbus-send's own connection: the bus announced it when
        // dbus-send connected and dropped it when dbus-send exited.
        let changes = try await InteropTool.messages(owners, keep: { $0.body.first == .string(sender) }) { kept in
            kept.contains { $0.body.last == .string("") }
        }
        #expect(
            changes.map(\.body) == [
                [.string(sender), .string(""), .string(sender)], [.string(sender), .string(sender), .string("")],
            ])
    }
}
