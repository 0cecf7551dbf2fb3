import DBus
import Foundation
import TestSupport
import Testing

/// The Swift service through systemd's `busctl` (sd-bus, an independent D-Bus
/// implementation): calls with JSON output, introspect, tree, properties,
/// GetManagedObjects, and a wrong signature.
@Suite struct BusctlInteropTests {
    /// `busctl --address=… [--json=short] -- command arguments…`; `--` keeps negative
    /// numbers from being read as options.
    static func busctl(_ arguments: [String], json: Bool = false, options: [String] = []) throws -> [String] {
        ["--address=\(try InteropService.address)", "--timeout=\(InteropTool.replyTimeoutSeconds)"] + (json ? ["--json=short"] : []) + options + ["--"] + arguments
    }

    /// Calls a method of the root object and returns the reply's JSON `data` array,
    /// checking its `type`.
    func call(_ service: InteropService, _ method: String, _ signature: String, _ arguments: [String], replyType: String)
        async throws -> [Any]
    {
        let out = try await InteropTool.output(
            "busctl",
            try Self.busctl(
                ["call", service.name, service.root.rawValue, InteropService.interfaceName, method, signature] + arguments,
                json: true))
        let reply = try InteropTool.json(out)
        #expect(reply["type"] as? String == replyType, "\(out)")
        return try #require(reply["data"] as? [Any], "\(out)")
    }

    @Test func busctlCallsMethodsOfManyTypes() async throws {
        let service = try await InteropService.start()
        let concat = try await call(service, "Concat", "ss", ["héllo", " wörld ✓"], replyType: "s")
        #expect(concat.first as? String == "héllo wörld ✓")

        let numbers = try await call(
            service, "Numbers", "ybnqiuxtd",
            ["250", "true", "-5", "7", "-100000", "4000000000", "-9000000000", "18000000000000000000", "2.5"],
            replyType: "ybnqiuxtd")
        #expect(numbers.count == 9)
        #expect((numbers[0] as? NSNumber)?.intValue == 251)
        #expect(numbers[1] as? Bool == false)
        #expect((numbers[2] as? NSNumber)?.intValue == -6)
        #expect((numbers[3] as? NSNumber)?.intValue == 8)
        #expect((numbers[4] as? NSNumber)?.intValue == -200_000)
        #expect((numbers[5] as? NSNumber)?.int64Value == 4_000_000_001)
        #expect((numbers[6] as? NSNumber)?.int64Value == -9_000_000_001)
        #expect((numbers[7] as? NSNumber)?.uint64Value == 17_999_999_999_999_999_999, "\(numbers[7])")
        #expect((numbers[8] as? NSNumber)?.doubleValue == 5.0)

        let inspected = try await call(
            service, "Inspect", "a{sv}",
            ["5", "a", "i", "5", "b", "s", "x", "c", "as", "2", "p", "q", "d", "(is)", "1", "z", "e", "t", "7"],
            replyType: "a{ss}")
        #expect(
            inspected.first as? [String: String] == [
                "a": "i 5", "b": "s 'x'", "c": "as ['p','q']", "d": "(is) (1,'z')", "e": "t 7",
            ])

        let options = try #require(try await call(service, "Options", "", [], replyType: "a{sv}").first as? [String: Any])
        func option(_ key: String) -> (type: String?, data: Any?) {
            let entry = options[key] as? [String: Any]
            return (entry?["type"] as? String, entry?["data"])
        }
        #expect(options.count == 8)
        #expect(option("name").type == "s" && option("name").data as? String == "shmbus")
        #expect(option("count").type == "u" && (option("count").data as? NSNumber)?.intValue == 3)
        #expect(option("ratio").type == "d" && (option("ratio").data as? NSNumber)?.doubleValue == 0.25)
        #expect(option("tags").type == "as" && option("tags").data as? [String] == ["x", "y"])
        #expect(option("point").type == "(ii)" && (option("point").data as? [NSNumber])?.map(\.intValue) == [3, -4])
        #expect(option("path").type == "o" && option("path").data as? String == "/org/shmbus")
        #expect(option("blob").type == "ay" && (option("blob").data as? [NSNumber])?.map(\.intValue) == [1, 2, 255])
        let nested = option("nested").data as? [String: Any]
        #expect(option("nested").type == "a{sv}" && (nested?["deep"] as? [String: Any])?["data"] as? Bool == true)

        let swapped = try await call(service, "Swap", "(si)", ["abc", "7"], replyType: "(is)")
        #expect((swapped.first as? [Any])?.first as? NSNumber == 7 && (swapped.first as? [Any])?.last as? String == "abc")

        let points = try await call(service, "Points", "a(ii)", ["3", "1", "2", "3", "4", "-10", "5"], replyType: "a(ii)x")
        #expect((points.first as? [[NSNumber]])?.map { $0.map(\.intValue) } == [[2, 3], [4, 5], [-9, 6]])
        #expect((points.last as? NSNumber)?.intValue == 5)

        let xor = try await call(service, "Xor", "ayy", ["4", "0", "1", "255", "90", "90"], replyType: "ayu")
        #expect((xor.first as? [NSNumber])?.map(\.intValue) == [0x5A, 0x5B, 0xA5, 0x00])
        #expect((xor.last as? NSNumber)?.intValue == 346)

        let path = try await call(service, "PathAndSignature", "og", ["/a/b", "a{sv}s"], replyType: "ogu")
        #expect(path.first as? String == "/a/b/item")
        #expect(path.dropFirst().first as? String == "a(a{sv}s)")
        #expect((path.last as? NSNumber)?.intValue == 2)

        let reversed = try await call(service, "Reverse", "as", ["3", "x", "y", "z"], replyType: "as")
        #expect(reversed.first as? [String] == ["z", "y", "x"])
    }

    @Test func busctlIntrospectAndTreeListTheObjects() async throws {
        let service = try await InteropService.start()
        let introspect = try await InteropTool.output(
            "busctl", try Self.busctl(["introspect", service.name, service.root.rawValue]))
        // NAME TYPE SIGNATURE RESULT/VALUE FLAGS, one member a line: the name, the type,
        // the signature, then the rest with runs of spaces collapsed.
        var rows: [String: [String]] = [:]
        for line in introspect.split(separator: "\n") {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if columns.count >= 4 { rows[columns[0]] = [columns[1], columns[2], columns.dropFirst(3).joined(separator: " ")] }
        }
        func row(_ name: String) -> [String] { rows[name] ?? [] }
        #expect(row(InteropService.interfaceName) == ["interface", "-", "- -"], "\(introspect)")
        #expect(row("org.freedesktop.DBus.ObjectManager") == ["interface", "-", "- -"])
        #expect(row(".Concat") == ["method", "ss", "s -"])
        #expect(row(".Numbers") == ["method", "ybnqiuxtd", "ybnqiuxtd -"])
        #expect(row(".Inspect") == ["method", "a{sv}", "a{ss} -"])
        #expect(row(".XorFd") == ["method", "hy", "ht -"])
        #expect(row(".PathAndSignature") == ["method", "og", "ogu -"])
        #expect(row(".GetManagedObjects") == ["method", "-", "a{oa{sa{sv}}} -"])
        #expect(row(".Changed") == ["signal", "su", "- -"])
        #expect(row(".Version") == ["property", "s", "\"interop-1.0\" emits-change"])
        #expect(row(".Label") == ["property", "s", "\"initial\" emits-change writable"])
        #expect(row(".Tags") == ["property", "as", "2 \"a\" \"b\" emits-change writable"])
        #expect(row(".Ratio") == ["property", "d", "0.5 emits-change writable"])

        let child = try await InteropTool.output(
            "busctl", try Self.busctl(["introspect", service.name, service.children[2].rawValue]))
        #expect(child.contains(InteropService.childInterfaceName))
        #expect(child.contains("\"third\""))
        #expect(!child.contains(InteropService.interfaceName + " "))

        // busctl tree walks the introspection data from "/": every object and every
        // node on the way to one, nothing else.
        let tree = try await InteropTool.output("busctl", try Self.busctl(["tree", service.name], options: ["--list"]))
        let listed = Set(tree.split(separator: "\n").map { InteropTool.trimmed(String($0)) }.filter { !$0.isEmpty })
        var expected: Set<String> = []
        for object in [service.root] + service.children {
            var path = ""
            for component in object.rawValue.split(separator: "/") {
                path += "/" + component
                expected.insert(path)
            }
        }
        #expect(listed.subtracting(["/"]) == expected, "\(tree)")
        let drawn = try await InteropTool.output("busctl", try Self.busctl(["tree", service.name]))
        for object in [service.root] + service.children {
            #expect(drawn.contains("─\(object)\n"), "\(drawn)")
        }
    }

    @Test func busctlGetsAndSetsProperties() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let i = InteropService.interfaceName
        let root = service.root.rawValue
        func get(_ property: String, path: String? = nil, interface: String? = nil) async throws -> String {
            InteropTool.trimmed(
                try await InteropTool.output(
                    "busctl", try Self.busctl(["get-property", service.name, path ?? root, interface ?? i, property])))
        }
        #expect(try await get("Label") == "s \"initial\"")
        #expect(try await get("Version") == "s \"interop-1.0\"")
        #expect(try await get("Tags") == "as 2 \"a\" \"b\"")
        #expect(try await get("Ratio") == "d 0.5")
        #expect(try await get("ChildCount") == "u 3")
        #expect(try await get("Index", path: service.children[1].rawValue, interface: InteropService.childInterfaceName) == "u 1")

        _ = try await InteropTool.output("busctl", try Self.busctl(["set-property", service.name, root, i, "Label", "s", "from busctl"]))
        _ = try await InteropTool.output("busctl", try Self.busctl(["set-property", service.name, root, i, "Tags", "as", "3", "p", "q", "r"]))
        _ = try await InteropTool.output("busctl", try Self.busctl(["set-property", service.name, root, i, "Ratio", "d", "-1.25"]))
        #expect(try await service.swiftProperty(client, "Label") == .string("from busctl"))
        #expect(try await service.swiftProperty(client, "Tags") == .array(.string, [.string("p"), .string("q"), .string("r")]))
        #expect(try await service.swiftProperty(client, "Ratio") == .double(-1.25))
        #expect(try await get("Label") == "s \"from busctl\"")
        #expect(try await get("Tags") == "as 3 \"p\" \"q\" \"r\"")

        let err = try await InteropTool.failure("busctl", try Self.busctl(["set-property", service.name, root, i, "Version", "s", "x"]))
        #expect(err.contains("Property 'Version' is read-only"), "\(err)")
        let wrongType = try await InteropTool.failure("busctl", try Self.busctl(["set-property", service.name, root, i, "Label", "u", "5"]))
        #expect(wrongType.contains("property Label has type 's', got a value of type 'u'"), "\(wrongType)")
        #expect(try await service.swiftProperty(client, "Label") == .string("from busctl"))
    }

    @Test func busctlGetManagedObjects() async throws {
        let service = try await InteropService.start()
        let out = try await InteropTool.output(
            "busctl",
            try Self.busctl(
                ["call", service.name, service.root.rawValue, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"],
                json: true))
        let reply = try InteropTool.json(out)
        #expect(reply["type"] as? String == "a{oa{sa{sv}}}")
        let objects = try #require((reply["data"] as? [Any])?.first as? [String: Any], "\(out)")
        #expect(Set(objects.keys) == Set(service.children.map(\.rawValue)), "\(out)")
        let names = ["first", "second", "third"]
        for (index, child) in service.children.enumerated() {
            let interfaces = objects[child.rawValue] as? [String: Any]
            let properties = try #require(interfaces?[InteropService.childInterfaceName] as? [String: [String: Any]], "\(out)")
            #expect(properties["Index"]?["type"] as? String == "u")
            #expect((properties["Index"]?["data"] as? NSNumber)?.intValue == index)
            #expect(properties["Name"]?["type"] as? String == "s")
            #expect(properties["Name"]?["data"] as? String == names[index])
            #expect(interfaces?[InteropService.interfaceName] == nil)
        }
    }

    @Test func busctlWrongSignatureGetsInvalidArgsAndTheServiceLivesOn() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let base = ["call", service.name, service.root.rawValue, InteropService.interfaceName]
        let tooFew = try await InteropTool.failure("busctl", try Self.busctl(base + ["Concat", "s", "only one"]))
        #expect(tooFew.contains("Concat takes arguments of signature 'ss', got 's'"), "\(tooFew)")
        let wrongType = try await InteropTool.failure("busctl", try Self.busctl(base + ["Numbers", "ybnqiuxtu", "1", "true", "1", "1", "1", "1", "1", "1", "1"]))
        #expect(wrongType.contains("Numbers takes arguments of signature 'ybnqiuxtd', got 'ybnqiuxtu'"), "\(wrongType)")
        // busctl prints only the message; the error's name, through two other clients.
        let gdbus = try await InteropTool.failure(
            "gdbus", try GdbusInteropTests.gdbus(service, "\(InteropService.interfaceName).Concat", ["'only one'"]))
        #expect(gdbus.contains("GDBus.Error:org.freedesktop.DBus.Error.InvalidArgs: Concat takes arguments of signature 'ss', got 's'"), "\(gdbus)")
        do {
            _ = try await service.swiftCall(client, "Concat", [.string("only one")])
            Issue.record("a wrong signature must fail")
        } catch let error as DBusError {
            #expect(error.name == DBusError.invalidArgsName)
        }
        // The next call works.
        let after = try await InteropTool.output("busctl", try Self.busctl(base + ["Concat", "ss", "still ", "alive"]))
        #expect(InteropTool.trimmed(after) == "s \"still alive\"")
    }
}
