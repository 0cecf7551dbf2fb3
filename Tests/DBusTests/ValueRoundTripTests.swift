import DBus
import Glibc
import ShmBusSystem
import TestSupport
import Glibc
import Testing

@Suite struct ValueRoundTripTests {
    static let basics: [DBusValue] = [
        .byte(0), .byte(255), .boolean(true), .boolean(false), .int16(.min), .int16(.max), .uint16(.max),
        .int32(.min), .int32(-1), .uint32(.max), .int64(.min), .int64(.max), .uint64(.max), .double(-0.5),
        .double(.infinity), .double(1e300), .string(""), .string("héllo wörld ✓ 日本"), .objectPath("/"),
        .objectPath("/a/b_c/D9"), .signature(""), .signature("a{sv}(iax)"),
    ]

    @Test(arguments: basics)
    func basicValueSurvivesTheBus(_ value: DBusValue) async throws {
        let echo = try await EchoService.start()
        let reply = try await echo.call("Echo", [.variant(value)])
        #expect(reply == [.variant(value)])
    }

    @Test func emptyArraysKeepTheirElementType() throws {
        // An empty [T] casts to [UInt8] for any T; the encoding must not be fooled.
        #expect([String]().dbusValue.type == .array(.string))
        #expect([[UInt32]]().dbusValue.type == .array(.array(.uint32)))
        #expect([UInt8]().dbusValue.type == .array(.byte))
        #expect(try [String](dbusValue: [String]().dbusValue) == [])
    }

    @Test func containersNestedDeeplySurviveTheBus() async throws {
        let echo = try await EchoService.start()
        let dict = DBusValue.dictionary(
            key: .string, value: .variant,
            [
                DBusDictEntry(key: .string("a"), value: .variant(.int32(1))),
                DBusDictEntry(key: .string("b"), value: .variant(.array(.string, [.string("x"), .string("y")]))),
            ])
        let structure = DBusValue.structure([.int64(-7), .bytes([1, 2, 3]), dict, .array(.int16, [])])
        let values: [DBusValue] = [
            dict, structure, .array(.structure([.int64, .array(.byte), dict.type, .array(.int16)]), [structure, structure]),
            .dictionary(key: .uint64, value: .array(.objectPath), []),
            .bytes([]), .bytes(Array(0...255)),
            .variant(.variant(.variant(.string("deep")))),
        ]
        for value in values {
            let reply = try await echo.call("Echo", [.variant(value)])
            #expect(reply == [.variant(value)], "round trip of \(value.type)")
        }
        // 31 nested arrays and 31 nested structs: the deepest signature the protocol allows
        // inside a variant, whose own nesting counts too.
        var nested = DBusValue.int32(42)
        for _ in 0..<31 { nested = .array(nested.type, [nested]) }
        var nestedStruct = DBusValue.byte(1)
        for _ in 0..<31 { nestedStruct = .structure([nestedStruct]) }
        for value in [nested, nestedStruct] {
            let reply = try await echo.call("Echo", [.variant(value)])
            #expect(reply == [.variant(value)])
        }
    }

    @Test func randomValuesRoundTrip() async throws {
        let echo = try await EchoService.start()
        var generator = RandomValues(seed: UInt64.random(in: 1...UInt64.max))
        let seed = generator.seed
        for index in 0..<300 {
            let value = generator.value(depth: 0)
            let reply = try await echo.call("Echo", [.variant(value)])
            #expect(reply == [.variant(value)], "seed \(seed), case \(index): \(value.type)")
        }
    }

    @Test func unixFileDescriptorsCrossBothWays() async throws {
        let echo = try await EchoService.start()
        let sent = try UnixFileDescriptor.memfd(name: "roundtrip")
        let fd = sent.rawValue
        let payload: [UInt8] = Array("fd payload".utf8)
        #expect(write(fd, payload, payload.count) == payload.count)
        let reply = try await echo.call("Echo", [.variant(.unixFD(sent)), ])
        guard case .variant(.unixFD(let received))? = reply.first else {
            Issue.record("reply \(reply) carries no fd")
            return
        }
        // A different descriptor number for the same open file.
        #expect(received.rawValue != sent.rawValue)
        var a = stat(), b = stat()
        #expect(fstat(sent.rawValue, &a) == 0 && fstat(received.rawValue, &b) == 0)
        #expect(a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        var back = [UInt8](repeating: 0, count: payload.count)
        #expect(pread(received.rawValue, &back, back.count, 0) == payload.count)
        #expect(back == payload)
    }

    @Test func typedDecodingChecksTypesAndCount() throws {
        let body: [DBusValue] = [.string("a"), .uint32(7), .array(.string, [.string("x")])]
        let (s, n, list) = try body.decode(String.self, UInt32.self, [String].self)
        #expect(s == "a" && n == 7 && list == ["x"])
        #expect(throws: DBusError.self) { try body.decode(String.self, String.self, [String].self) }
        #expect(throws: DBusError.self) { try body.decode(String.self, UInt32.self) }
        let options: [String: DBusVariant] = ["persistent": DBusVariant(true), "ttl": DBusVariant(UInt64(5))]
        let decoded = try [String: DBusVariant](dbusValue: options.dbusValue)
        #expect(try decoded.decode("persistent", as: Bool.self) == true)
        #expect(try decoded.decode("ttl", as: UInt64.self) == 5)
        #expect(try decoded.decode("missing", as: Bool.self) == nil)
        #expect(throws: DBusError.self) { try decoded.decode("ttl", as: String.self) }
    }
}

/// Random D-Bus values of random types (a xorshift generator so that a failing case is
/// reproducible from its seed).
struct RandomValues {
    let seed: UInt64
    private var state: UInt64

    init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    mutating func string() -> String {
        let alphabet = Array("abcXYZ019 _-/éü✓日")
        return String((0..<below(12)).map { _ in alphabet[below(alphabet.count)] })
    }

    mutating func type(depth: Int) -> DBusType {
        let basic: [DBusType] = [.byte, .boolean, .int16, .uint16, .int32, .uint32, .int64, .uint64, .double, .string, .objectPath, .signature]
        if depth >= 4 || below(3) == 0 { return basic[below(basic.count)] }
        switch below(4) {
        case 0: return .array(type(depth: depth + 1))
        case 1: return .dictionary(key: basic[below(basic.count)], value: type(depth: depth + 1))
        case 2: return .structure((0..<(1 + below(3))).map { _ in type(depth: depth + 1) })
        default: return .variant
        }
    }

    mutating func value(depth: Int) -> DBusValue { value(of: type(depth: depth), depth: depth) }

    mutating func value(of type: DBusType, depth: Int) -> DBusValue {
        switch type {
        case .byte: return .byte(UInt8(truncatingIfNeeded: next()))
        case .boolean: return .boolean(next() & 1 == 0)
        case .int16: return .int16(Int16(truncatingIfNeeded: next()))
        case .uint16: return .uint16(UInt16(truncatingIfNeeded: next()))
        case .int32: return .int32(Int32(truncatingIfNeeded: next()))
        case .uint32: return .uint32(UInt32(truncatingIfNeeded: next()))
        case .int64: return .int64(Int64(bitPattern: next()))
        case .uint64: return .uint64(next())
        case .double: return .double(Double(Int64(bitPattern: next())) / 3)
        case .string: return .string(string())
        case .objectPath: return .objectPath(ObjectPath.root.appending(escaped: string()))
        case .signature: return .signature(DBusSignature([self.type(depth: 2)]))
        case .unixFD: return .int32(0)
        case .variant: return .variant(value(depth: depth + 1))
        case .array(.byte): return .bytes((0..<below(40)).map { _ in UInt8(truncatingIfNeeded: next()) })
        case .array(let element): return .array(element, (0..<below(4)).map { _ in value(of: element, depth: depth + 1) })
        case .dictionary(let key, let valueType):
            return .dictionary(
                key: key, value: valueType,
                (0..<below(4)).map { _ in
                    DBusDictEntry(key: value(of: key, depth: depth + 1), value: value(of: valueType, depth: depth + 1))
                })
        case .structure(let fields): return .structure(fields.map { value(of: $0, depth: depth + 1) })
        }
    }
}
