import DBus
import TestSupport
import Testing

/// Invalid input must throw before it reaches libdbus, which would abort the process.
@Suite struct ValidationTests {
    static let badPaths = ["", "no/leading/slash", "/trailing/", "//double", "/with space", "/dash-ed", "/nul\u{0}x", "/é"]
    static let badBusNames = ["", "no-dots", ".starts.with.dot", "org..double", "org.1digit", String(repeating: "a.", count: 200) + "a", "org.nul\u{0}.x"]
    static let badInterfaces = ["", "single", "org.shmbus.", "org.shmbus.1x", "org.shm-bus.X", "org.ünicode.X"]
    static let badMembers = ["", "has.dot", "1digit", "has-dash", String(repeating: "m", count: 256)]
    static let badSignatures = ["(", ")", "a", "{sv}", "a{vs}", "a{(i)s}", "()", "z", "aa{sv", String(repeating: "a", count: 33) + "i", String(repeating: "(", count: 33) + "i" + String(repeating: ")", count: 33), String(repeating: "i", count: 256)]

    @Test(arguments: badPaths)
    func invalidObjectPathsThrow(_ path: String) {
        #expect(ObjectPath(rawValue: path) == nil)
        #expect(throws: DBusError.self) { try ObjectPath(validating: path) }
    }

    @Test(arguments: badBusNames)
    func invalidBusNamesThrow(_ name: String) async throws {
        #expect(throws: DBusError.self) { try DBusName.validateBusName(name) }
        #expect(throws: DBusError.self) {
            try DBusMessage.methodCall(destination: name, path: "/", interface: "org.a.B", member: "M")
        }
        let bus = try await TestBus.connect()
        await #expect(throws: DBusError.self) { _ = try await bus.requestName(name) }
    }

    @Test(arguments: badInterfaces)
    func invalidInterfaceNamesThrow(_ name: String) {
        #expect(throws: DBusError.self) { try DBusMessage.signal(path: "/", interface: name, member: "M") }
    }

    @Test(arguments: badMembers)
    func invalidMemberNamesThrow(_ name: String) {
        #expect(throws: DBusError.self) { try DBusMessage.signal(path: "/", interface: "org.a.B", member: name) }
    }

    @Test(arguments: badSignatures)
    func invalidSignaturesThrow(_ text: String) {
        #expect(DBusSignature(rawValue: text) == nil)
    }

    @Test func validSignaturesParse() throws {
        for text in ["", "s", "a{sv}", "(ii)", "a(sa{sv}ay)", "aa{s(vv)}", "hogt", String(repeating: "a", count: 32) + "i"] {
            let signature = try DBusSignature(validating: text)
            #expect(signature.rawValue == text)
            #expect(DBusSignature(signature.types).rawValue == text)
        }
    }

    @Test func invalidValuesThrowWhenSent() async throws {
        let echo = try await EchoService.start()
        let invalid: [DBusValue] = [
            .string("nul\u{0}inside"),
            .array(.int32, [.int32(1), .string("not an int")]),
            .dictionary(key: .variant, value: .string, []),
            .dictionary(key: .string, value: .int32, [DBusDictEntry(key: .string("k"), value: .string("v"))]),
            .structure([]),
            .array(.structure([]), []),
        ]
        for value in invalid {
            await #expect(throws: DBusError.self, "\(value)") { _ = try await echo.call("Echo", [.variant(value)]) }
        }
        // Nesting beyond the protocol's depth is refused too.
        var deep = DBusValue.byte(0)
        for _ in 0..<70 { deep = .variant(deep) }
        await #expect(throws: DBusError.self) { _ = try await echo.call("Echo", [.variant(deep)]) }
        // And the process and connection are fine.
        #expect(try await echo.call("Add", [.int32(2), .int32(2)]) == [.int32(4)])
    }

    @Test func invalidMatchRulesThrow() async throws {
        let bus = try await TestBus.connect()
        var rule = MatchRule(interface: "not an interface")
        await #expect(throws: DBusError.self) { _ = try await bus.signals(matching: rule) }
        rule = MatchRule(interface: "org.a.B").matching(argument: 64, "x")
        await #expect(throws: DBusError.self) { _ = try await bus.signals(matching: rule) }
        rule = MatchRule(interface: "org.a.B").matching(argument: 0, String(repeating: "x", count: 1100))
        await #expect(throws: DBusError.self) { _ = try await bus.signals(matching: rule) }
    }

    @Test func objectPathEscapingIsReversible() throws {
        for text in ["", "frames", "camera/0", "a b", "..", "日本", "0lead", "_x_"] {
            let component = ObjectPath.escape(text)
            let path = ObjectPath.root.appending(escaped: text)
            #expect(path.rawValue == "/" + component)
            #expect(ObjectPath.unescape(component) == text)
        }
    }
}
