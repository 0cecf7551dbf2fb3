import DBus
import Foundation
import TestSupport
import Testing

/// The Swift service through a python3-dbus client (interop_client.py, next to this
/// file): typed calls, a memfd passed both ways and checked byte for byte, a signal
/// from `DBusExport.emit`, and named errors.
@Suite struct PythonInteropTests {
    func python(_ command: String, _ service: InteropService, _ extra: [String] = []) async throws -> [String] {
        let out = try await InteropTool.output(
            InteropTool.python,
            [InteropTool.pythonClient, command, try InteropService.address, service.name, service.root.rawValue] + extra)
        return out.split(separator: "\n").map(String.init)
    }

    /// Lines `key rest` as a dictionary.
    func keyed(_ lines: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 1)
            out[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return out
    }

    @Test func pythonCallsMethodsOfManyTypes() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let got = keyed(try await python("calls", service))
        #expect(got["concat"] == #""héllo wörld ✓""#)
        #expect(got["numbers"] == "[251, false, -6, 8, -200000, 4000000001, -9000000001, 17999999999999999999, 5.0]")
        #expect(
            got["inspect"]
                == #"{"a": "i 5", "b": "s 'x'", "c": "as ['p','q']", "d": "(is) (1,'z')", "e": "t 7", "f": "o /x/y", "g": "b true", "h": "ay [1,2]"}"#
        )
        #expect(
            got["options"]
                == #"{"blob": [1, 2, 255], "count": 3, "name": "shmbus", "nested": {"deep": true}, "path": "/org/shmbus", "point": [3, -4], "ratio": 0.25, "tags": ["x", "y"]}"#
        )
        #expect(got["swap"] == #"[7, "abc"]"#)
        #expect(got["points"] == "[[[2, 3], [4, 5], [-9, 6]], 5]")
        #expect(got["xor"] == "[[90, 91, 165, 0], 346]")
        #expect(got["path"] == #"["/a/b/item", "a(a{sv}s)", 2]"#)
        #expect(got["reverse"] == #"["z", "y", "x"]"#)
        #expect(got["version"] == #""interop-1.0""#)
        #expect(got["label"] == #""from python""#)
        let managed = try #require(
            try JSONSerialization.jsonObject(with: Data((got["managed"] ?? "").utf8)) as? [String: [String: [String: Any]]])
        #expect(Set(managed.keys) == Set(service.children.map(\.rawValue)))
        #expect(managed[service.children[2].rawValue]?[InteropService.childInterfaceName]?["Name"] as? String == "third")
        #expect((managed[service.children[2].rawValue]?[InteropService.childInterfaceName]?["Index"] as? NSNumber)?.intValue == 2)
        #expect(try await service.swiftProperty(client, "Label") == .string("from python"))
    }

    @Test func pythonPassesAMemfdAndGetsATransformedOneBack() async throws {
        let service = try await InteropService.start()
        let size = 300_007
        let got = keyed(try await python("fd", service, ["\(size)"]))
        // Python checked what came back byte for byte against its own bytes XOR 0x5A.
        #expect(got["verdict"] == "ok \(size)", "\(got)")
        #expect(got["count"] == "\(size)")
        // A new memfd made by the service, not the caller's file sent back.
        #expect(got["returned"]?.hasPrefix("/memfd:shmbus-interop-xor") == true, "\(got["returned"] ?? "")")
        #expect(got["returned"]?.hasSuffix(" new-file") == true)
        // The service read exactly the bytes Python wrote (its handler used pread; the
        // caller's offset was at the end of the file).
        let sent = try #require(got["sent"].flatMap(Self.bytes(hex:)))
        #expect(sent.count == size)
        let received = try #require(service.state.receivedFromDescriptor.withLock { $0 })
        #expect(received == sent)
    }

    @Test func pythonReceivesASignalEmittedByTheExport() async throws {
        let service = try await InteropService.start()
        let token = TestBus.uniqueSuffix()
        let address = try InteropService.address
        async let run = BuiltProducts.run(
            InteropTool.python, [InteropTool.pythonClient, "signal", address, service.name, service.root.rawValue, token])
        // Python calls Ready once its match rule is in place.
        let ready = await InteropTool.first(service.state.ready)
        #expect(ready == token)
        try service.rootExport.emit("Changed", [.string("from swift \(token)"), .uint32(42)])
        let (status, out, err) = try await run
        #expect(status == .exited(0), "\(err)")
        let got = keyed(out.split(separator: "\n").map(String.init))
        #expect(got["signal"] == "\(service.connection.uniqueName) \(service.root) from swift \(token) 42", "\(out)")
        #expect(got["me"]?.hasPrefix(":") == true && got["me"] != service.connection.uniqueName)
        #expect(got["timeout"] == nil)
    }

    @Test func pythonGetsNamedErrorsAndTheServiceLivesOn() async throws {
        let service = try await InteropService.start()
        let got = keyed(try await python("errors", service))
        #expect(
            got["wrong-signature"]
                == "org.freedesktop.DBus.Error.InvalidArgs Concat takes arguments of signature 'ss', got 's'")
        #expect(got["wrong-types"] == "org.freedesktop.DBus.Error.InvalidArgs Concat takes arguments of signature 'ss', got 'su'")
        #expect(
            got["unknown-method"]
                == "org.freedesktop.DBus.Error.UnknownMethod No such method 'NoSuchMethod' in interface '\(InteropService.interfaceName)'")
        #expect(
            got["unknown-interface"]
                == "org.freedesktop.DBus.Error.UnknownInterface Object \(service.root) has no interface 'org.shmbus.Test.NoSuch'")
        #expect(
            got["unknown-object"]
                == "org.freedesktop.DBus.Error.UnknownObject No such object path '\(service.root)/no/such/object'")
        #expect(got["read-only"] == "org.freedesktop.DBus.Error.PropertyReadOnly Property 'Version' is read-only")
        #expect(got["after"] == "still alive")
    }

    @Test func pythonCallsWithoutAnInterfaceField() async throws {
        let service = try await InteropService.start()
        let got = keyed(try await python("no-interface", service))
        #expect(got["Concat"] == "ok ab")
        // Standard methods are found without an INTERFACE field too (Introspectable,
        // Properties, ObjectManager, and Peer, which libdbus answers only when named).
        #expect(got["Introspect"] == "ok <!DOCTYPE node")
        #expect(got["Get"] == "ok initial")
        #expect(got["GetManagedObjects"] == "ok 3")
        #expect(got["Ping"] == "ok ")
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = value(digits[i]), let lo = value(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
