import DBus
import Foundation
import Locking
import TestSupport
import Testing

/// The Swift layer as a CLIENT of a service it did not write: a GDBus service in
/// Python (gio_peer.py serve). GLib marshals and parses messages with its own code,
/// so these tests check the Swift side's values, replies, errors, timeouts, fds and
/// signal routing against an independent implementation.
@Suite struct GioPeerInteropTests {
    /// Values whose wire form GLib reads, types and prints: every basic type at its
    /// extremes, empty arrays of 8-aligned elements, mixed alignments, nesting.
    static let echoed: [(DBusValue, String, String)] = {
        let allBasic: DBusValue = .structure([
            .byte(1), .boolean(false), .int16(2), .uint16(3), .int32(4), .uint32(5), .int64(6), .uint64(7), .double(8.5),
            .string("s"), .objectPath("/o"), .signature("g"),
        ])
        var deepArray: DBusValue = .array(.int32, [.int32(7)])
        for _ in 1..<32 { deepArray = .array(deepArray.type, [deepArray]) }
        var deepVariant: DBusValue = .int32(1)
        for _ in 0..<20 { deepVariant = .variant(deepVariant) }
        return [
            (.byte(0), "y", "byte 0x00"),
            (.boolean(true), "b", "true"),
            (.int16(.min), "n", "int16 -32768"),
            (.uint16(.max), "q", "uint16 65535"),
            (.int32(.min), "i", "-2147483648"),
            (.uint32(.max), "u", "uint32 4294967295"),
            (.int64(.min), "x", "int64 -9223372036854775808"),
            (.uint64(.max), "t", "uint64 18446744073709551615"),
            (.double(-0x1p100), "d", "-1.2676506002282294e+30"),
            (.string("grüße ✓ \u{1F600}"), "s", "'grüße ✓ \u{1F600}'"),
            (.objectPath("/a/b_c/d0"), "o", "objectpath '/a/b_c/d0'"),
            (.signature("a{sv}(iii)h"), "g", "signature 'a{sv}(iii)h'"),
            (.array(.string, []), "as", "@as []"),
            (.array(.structure([.uint64, .uint64]), []), "a(tt)", "@a(tt) []"),
            (
                .array(.structure([.byte, .uint64]), [.structure([.byte(1), .uint64(2)]), .structure([.byte(255), .uint64(.max)])]),
                "a(yt)", "[(byte 0x01, uint64 2), (0xff, 18446744073709551615)]"
            ),
            (
                allBasic, "(ybnqiuxtdsog)",
                "(byte 0x01, false, int16 2, uint16 3, 4, uint32 5, int64 6, uint64 7, 8.5, 's', objectpath '/o', signature 'g')"
            ),
            (
                .dictionary(key: .string, value: .variant, [
                    DBusDictEntry(key: .string("k"), value: .variant(.variant(.int32(1)))),
                    DBusDictEntry(key: .string("e"), value: .variant(.array(.int32, []))),
                ]), "a{sv}", "{'k': <<1>>, 'e': <@ai []>}"
            ),
            (.bytes([0, 1, 255]), "ay", "[byte 0x00, 0x01, 0xff]"),
            (.bytes(Array("SHM\0".utf8)), "ay", "b'SHM'"),
            (.array(.array(.byte), [.bytes([1]), .bytes([])]), "aay", "[[byte 0x01], []]"),
            (
                .dictionary(key: .objectPath, value: .dictionary(key: .string, value: .variant), [
                    DBusDictEntry(
                        key: .objectPath("/x"),
                        value: .dictionary(key: .string, value: .variant, [DBusDictEntry(key: .string("p"), value: .variant(.uint32(1)))]))
                ]), "a{oa{sv}}", "{objectpath '/x': {'p': <uint32 1>}}"
            ),
            (.dictionary(key: .int64, value: .string, [DBusDictEntry(key: .int64(-1), value: .string("minus"))]), "a{xs}", "{int64 -1: 'minus'}"),
            (.array(.double, [.double(0.5), .double(-0.0)]), "ad", "[0.5, -0.0]"),
            (deepArray, String(repeating: "a", count: 32) + "i", String(repeating: "[", count: 32) + "7" + String(repeating: "]", count: 32)),
            (deepVariant, "v", String(repeating: "<", count: 20) + "1" + String(repeating: ">", count: 20)),
        ]
    }()

    @Test func glibReadsWhatSwiftMarshals() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        for (value, type, text) in Self.echoed {
            let reply = try await service.call(client, "Echo", [.variant(value)])
            #expect(reply.count == 3)
            // GLib's view: the type it parsed and its own rendering of the value.
            #expect(reply.dropFirst().first == .string(type), "\(value)")
            #expect(reply.last == .string(text), "\(value)")
            // Back through GLib's marshaller, and read by ours: the same value.
            #expect(reply.first == .variant(value), "\(value)")
        }
        try await service.stop()
    }

    @Test func swiftReadsWhatGLibMarshals() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        let sample = try await service.call(client, "Sample").decode([String: DBusVariant].self).mapValues(\.value)
        let expected: [String: DBusValue] = [
            "y": .byte(200), "b": .boolean(true), "n": .int16(-12345), "q": .uint16(54321), "i": .int32(-2_000_000_000),
            "u": .uint32(4_000_000_000), "x": .int64(-9_000_000_000_000_000_000), "t": .uint64(18_000_000_000_000_000_000),
            "d": .double(-0.125), "s": .string("grüße ✓"), "o": .objectPath("/org/gtk/peer"), "g": .signature("a{sv}(ii)"),
            "as": .array(.string, [.string("one"), .string(""), .string("three")]),
            "ay": .bytes([0, 1, 0xFE, 0xFF]),
            "struct": .structure([.string("s"), .int64(-1), .boolean(false)]),
            "dict": .dictionary(key: .string, value: .string, [DBusDictEntry(key: .string("k"), value: .string("v"))]),
            "aai": .array(.array(.int32), [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, []), .array(.int32, [.int32(3)])]),
            "deep": .variant(.variant(.string("inner"))),
            "tuples": .array(
                .structure([.byte, .uint64]), [.structure([.byte(1), .uint64(2)]), .structure([.byte(3), .uint64(4)])]),
        ]
        #expect(Set(sample.keys) == Set(expected.keys))
        for (key, value) in expected {
            #expect(sample[key] == value, "\(key)")
        }
        // Empty containers, including arrays of 8-aligned structs (padding with no
        // elements after it).
        let empties = try await service.call(client, "Empties")
        #expect(
            empties == [
                .array(.structure([.uint64, .uint64]), []), .dictionary(key: .string, value: .variant, []), .array(.string, []),
                .bytes([]), .structure([.array(.int32, [])]), .array(.uint64, []),
            ])
        try await service.stop()
    }

    @Test func glibErrorsArriveWithTheirNames() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        func error(_ method: String, _ arguments: [DBusValue], interface: String = GioService.interfaceName, path: ObjectPath? = nil)
            async -> DBusError?
        {
            do {
                _ = try await service.call(client, method, arguments, interface: interface, path: path)
                return nil
            } catch {
                return error as? DBusError
            }
        }
        let custom = await error("Fail", [.string("org.shmbus.Test.Error.Custom"), .string("went wrong: ü ✓")])
        #expect(custom == DBusError(name: "org.shmbus.Test.Error.Custom", message: "went wrong: ü ✓"))
        // GLib's own refusals, with GLib's names and wording (it answers a missing
        // object with UnknownMethod).
        #expect(
            await error("Fail", [.string("only one")])
                == DBusError(name: DBusError.invalidArgsName, message: "Type of message, “(s)”, does not match expected type “(ss)”"))
        #expect(await error("Nope", []) == DBusError(name: DBusError.unknownMethodName, message: "No such method “Nope”"))
        let missing = service.path.appending(escaped: "missing")
        #expect(
            await error("Sample", [], path: missing)
                == DBusError(name: DBusError.unknownMethodName, message: "Object does not exist at path “\(missing)”"))
        // The connection and the peer are fine afterwards.
        #expect(try await service.call(client, "Delay", [.uint32(1)]) == [.uint32(1)])
        try await service.stop()
    }

    @Test func callsToGLibTimeOutCancelAndMatchRepliesOutOfOrder() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()

        // A method GLib never answers: NoReply after our timeout, not libdbus's 25 s.
        let start = ContinuousClock.now
        do {
            _ = try await service.call(client, "Never", timeout: .milliseconds(300))
            Issue.record("Never should not get a reply")
        } catch let error as DBusError {
            #expect(error.name == DBusError.noReplyName, "\(error)")
        }
        let waited = ContinuousClock.now - start
        // Not before our timeout, and not after libdbus's default of 25 s.
        #expect(waited >= .milliseconds(250) && waited < .seconds(20), "\(waited)")

        // Cancelling the calling task ends the call: with CancellationError, where a
        // cancellation that did not reach the call would end in NoReply after 60 s.
        let task = Task { try await service.call(client, "Never", timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }

        // GLib holds four calls and answers them last-come first: each caller still
        // gets its own reply, so replies are matched by serial, not by order.
        let arrivals = Lock<[UInt32: UInt32]>([:])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for token: UInt32 in [600, 400, 200, 1] {
                group.addTask {
                    let reply = try await service.call(client, "Hold", [.uint32(4), .uint32(token)])
                    let (same, arrival) = try reply.decode(UInt32.self, UInt32.self)
                    #expect(same == token)
                    arrivals.withLock { $0[token] = arrival }
                }
            }
            try await group.waitForAll()
        }
        #expect(Set(arrivals.withLock { $0.values }) == [0, 1, 2, 3])
        try await service.stop()
    }

    @Test func fileDescriptorsBothWaysWithGLib() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        #expect(client.canPassUnixFDs)

        // One memfd to GLib, a new one back, every byte XORed with the key.
        let content = InteropFiles.bytes(200_003, seed: UInt64.random(in: 0...UInt64.max))
        let sent = try InteropFiles.memfd("swift-to-gio", content)
        let reply = try await service.call(client, "Transform", [.unixFD(sent), .byte(0xA5)])
        let (returned, size, link) = try reply.decode(UnixFileDescriptor.self, UInt64.self, String.self)
        #expect(size == UInt64(content.count))
        #expect(link.hasPrefix("/memfd:swift-to-gio"), "\(link)")
        #expect(InteropFiles.link(returned).hasPrefix("/memfd:gio-transformed"), "\(InteropFiles.link(returned))")
        let back = try InteropService.readAll(returned)
        #expect(back.count == content.count)
        #expect(back == content.map { $0 ^ 0xA5 })

        // Several fds in one reply, in a dictionary.
        let files = try await service.call(client, "Files", [.uint32(5)]).decode([String: UnixFileDescriptor].self)
        #expect(files.keys.sorted() == ["f0", "f1", "f2", "f3", "f4"])
        for i in 0..<5 {
            let fd = try #require(files["f\(i)"])
            #expect(InteropFiles.link(fd).hasPrefix("/memfd:gio-file-\(i)"), "\(InteropFiles.link(fd))")
            #expect(try InteropService.readAll(fd) == Array(String(repeating: "file \(i);", count: i + 1).utf8))
        }

        // Several fds in one call, in an array, told apart by GLib.
        let sizes = [1, 4096, 70_000]
        let many = try sizes.enumerated().map { try InteropFiles.memfd("swift-many-\($0.offset)", [UInt8](repeating: 7, count: $0.element)) }
        let described = try await service.call(client, "Describe", [.array(.unixFD, many.map { .unixFD($0) })])
        guard case .array(_, let entries)? = described.first, entries.count == 3 else {
            Issue.record("Describe replied \(described)")
            return
        }
        for (i, entry) in entries.enumerated() {
            guard case .structure(let fields) = entry, case .uint64(let size) = fields[0], case .string(let link) = fields[1] else {
                Issue.record("entry \(entry)")
                continue
            }
            #expect(size == UInt64(sizes[i]))
            #expect(link.hasPrefix("/memfd:swift-many-\(i)"), "\(link)")
        }
        try await service.stop()
    }

    @Test func glibSignalsAreFilteredAndCarryItsUniqueName() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        #expect(try await client.nameOwner(of: service.name) == service.uniqueName)
        let i = GioService.interfaceName
        // By well-known sender and arg0, and by unique sender only.
        let mine = try await client.signals(
            matching: MatchRule(sender: service.name, interface: i, member: "Tick", path: service.path).matching(argument: 0, "mine"))
        let all = try await client.signals(matching: MatchRule(sender: service.uniqueName, interface: i, member: "Tick"))
        _ = try await service.call(client, "Emit", [.string("other"), .uint32(2)])
        _ = try await service.call(client, "Emit", [.string("mine"), .uint32(3)])

        let gotMine = try await SignalTests.collect(mine, count: 3)
        #expect(gotMine.map(\.body) == (0..<3).map { [.string("mine"), .uint32(UInt32($0))] })
        #expect(gotMine.allSatisfy { $0.sender == service.uniqueName && $0.path == service.path })
        let gotAll = try await SignalTests.collect(all, count: 5)
        #expect(
            gotAll.map(\.body)
                == [[.string("other"), .uint32(0)], [.string("other"), .uint32(1)]]
                + (0..<3).map { [.string("mine"), .uint32(UInt32($0))] })

        // A signal GLib sends to one connection only reaches that connection.
        let bystander = try await TestBus.connect()
        let overheard = try await bystander.signals(matching: MatchRule(sender: service.uniqueName, interface: i))
        let whispers = try await client.signals(matching: MatchRule(sender: service.uniqueName, interface: i, member: "Private"))
        _ = try await service.call(client, "Whisper", [.string("psst")])
        let whisper = try #require(try await SignalTests.collect(whispers, count: 1).first)
        #expect(whisper.body == [.string("psst")])
        #expect(whisper.destination == client.uniqueName)
        #expect(whisper.sender == service.uniqueName)
        // The bystander's first signal is the broadcast sent after the whisper.
        let first = try #require(try await SignalTests.collect(overheard, count: 1).first)
        #expect(first.member == "Tick" && first.body == [.string("after psst"), .uint32(0)], "\(first) \(first.body)")
        try await service.stop()
    }

    @Test func aWellKnownSenderIsFollowedToItsNextOwner() async throws {
        let first = try await GioService.start()
        let client = try await TestBus.connect()
        let stream = try await client.signals(
            matching: MatchRule(sender: first.name, interface: GioService.interfaceName, member: "Tick", path: first.path))
        _ = try await first.call(client, "Emit", [.string("from the first owner"), .uint32(1)])
        try await first.stop()

        // Another GLib peer takes the name over; a third, at the same path but without
        // the name, emits too and must not get through.
        let second = try await GioService.start(name: first.name, path: first.path)
        #expect(second.uniqueName != first.uniqueName)
        #expect(try await client.nameOwner(of: first.name) == second.uniqueName)
        let impostor = try await GioService.start(path: first.path)
        _ = try await impostor.call(client, "Emit", [.string("from an impostor"), .uint32(1)])
        _ = try await second.call(client, "Emit", [.string("from the second owner"), .uint32(1)])

        let got = try await SignalTests.collect(stream, count: 2)
        #expect(got.map(\.body) == [[.string("from the first owner"), .uint32(0)], [.string("from the second owner"), .uint32(0)]])
        #expect(got.map(\.sender) == [first.uniqueName, second.uniqueName])
        try await second.stop()
        try await impostor.stop()
    }

    @Test func aProxyBuiltFromGLibsIntrospection() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        let xml = try await service.call(client, "Introspect", interface: StandardInterfaces.introspectableName)
            .decode(String.self)
        let node = try DBusIntrospection(xml: xml)
        let declared = try #require(node.interface(named: GioService.interfaceName), "\(xml)")
        #expect(declared.method(named: "Transform")?.inputSignature == "hy")
        #expect(declared.method(named: "Transform")?.outputSignature == "hts")
        #expect(declared.method(named: "Empties")?.outputSignature == "a(tt)a{sv}asay(ai)at")
        #expect(declared.signal(named: "Tick")?.signature == "su")
        #expect(declared.property(named: "Title")?.access == .readwrite)
        #expect(declared.property(named: "Calls")?.access == .read)
        #expect(node.interface(named: StandardInterfaces.propertiesName) != nil)

        let proxy = declared.proxy(on: client, destination: service.name, path: service.path)
        #expect(try await proxy.property("Title") == .string("gio"))
        let changes = try await client.signals(
            matching: MatchRule(sender: service.name, interface: StandardInterfaces.propertiesName, member: "PropertiesChanged"))
        try await proxy.setProperty("Title", .string("from swift ✓"))
        #expect(try await proxy.property("Title") == .string("from swift ✓"))
        let changed = try #require(try await SignalTests.collect(changes, count: 1).first)
        #expect(
            changed.body == [
                .string(GioService.interfaceName),
                .dictionary(key: .string, value: .variant, [DBusDictEntry(key: .string("Title"), value: .variant(.string("from swift ✓")))]),
                .array(.string, []),
            ])
        // GLib answers Introspect and Properties itself: its handler counted no calls.
        #expect(try await proxy.allProperties() == ["Calls": .uint32(0), "Title": .string("from swift ✓")])

        // The declaration checks calls before anything is sent, and replies after.
        await #expect(throws: DBusError.self) { try await proxy.call("Delay", [.string("not a u")]) }
        #expect(try await proxy.call("Delay", [.uint32(3)]) == [.uint32(3)])
        #expect(try await proxy.property("Calls") == .uint32(1))
        let ticks = try await proxy.signals("Tick", arguments: [0: "proxied"])
        _ = try await proxy.call("Emit", [.string("unrelated"), .uint32(1)])
        _ = try await proxy.call("Emit", [.string("proxied"), .uint32(1)])
        #expect(try await InteropWait.first(ticks) == [.string("proxied"), .uint32(0)])
        try await service.stop()
    }

    @Test func aReplyWithADanglingFdFailsTheCall() async throws {
        let service = try await GioService.start()
        let client = try await TestBus.connect()
        // GLib replies with a handle that points past the reply's (empty) fd list.
        // The call fails with the reading error, not with NoReply after its timeout.
        var failure: DBusError?
        do {
            let reply = try await service.call(client, "DanglingFd", timeout: .seconds(60))
            Issue.record("a reply without its descriptor was decoded as \(reply)")
        } catch let error as DBusError {
            failure = error
        }
        #expect(failure?.name == DBusError.invalidArgsName, "\(String(describing: failure))")
        // The connection works afterwards.
        #expect(try await service.call(client, "Delay", [.uint32(1)]) == [.uint32(1)])
        try await service.stop()
    }
}
