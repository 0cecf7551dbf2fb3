import DBus
import ShmBusTesting
import TestSupport
import Testing

@Suite struct SignalTests {
    static let interface = "org.shmbus.Test.Signals"

    /// Collects the next `count` messages of a stream; fewer (what came) after
    /// `timeout`, which only keeps a broken peer from hanging the test: a signal takes
    /// milliseconds, but the suite shares two cores (and TSan slows it 5-10x).
    static func collect(_ stream: DBusSignalStream, count: Int, timeout: Duration = .seconds(60)) async throws -> [DBusMessage] {
        try await withThrowingTaskGroup(of: [DBusMessage]?.self) { group in
            group.addTask {
                var out: [DBusMessage] = []
                for try await message in stream {
                    out.append(message)
                    if out.count == count { break }
                }
                return out
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
    }

    @Test func signalsArriveWithTheSendersUniqueName() async throws {
        let emitter = try await TestBus.connect()
        let receiver = try await TestBus.connect()
        let stream = try await receiver.signals(matching: MatchRule(interface: Self.interface, member: "Hello"))
        try emitter.emit(path: "/org/shmbus/test/a", interface: Self.interface, member: "Hello", [.string("hi"), .uint64(7)])
        let got = try await Self.collect(stream, count: 1)
        #expect(got.count == 1)
        #expect(got.first?.sender == emitter.uniqueName)
        #expect(got.first?.body == [.string("hi"), .uint64(7)])
        #expect(got.first?.path == "/org/shmbus/test/a")
    }

    @Test func rulesFilterByPathInterfaceMemberAndArg0() async throws {
        let emitter = try await TestBus.connect()
        let receiver = try await TestBus.connect()
        let suffix = TestBus.uniqueSuffix()
        let iface = "org.shmbus.Test.Filter.\(suffix)"
        let other = "org.shmbus.Test.Other.\(suffix)"
        let path = ObjectPath.root.appending(escaped: suffix)
        let byPath = try await receiver.signals(matching: MatchRule(path: path))
        let byInterface = try await receiver.signals(matching: MatchRule(interface: other))
        let byMember = try await receiver.signals(matching: MatchRule(interface: iface, member: "Second"))
        let byArg0 = try await receiver.signals(matching: MatchRule(interface: iface).matching(argument: 0, "frames"))
        let byNamespace = try await receiver.signals(matching: MatchRule(pathNamespace: path))

        try emitter.emit(path: "/elsewhere", interface: iface, member: "First", [.string("cams")])
        try emitter.emit(path: path, interface: iface, member: "First", [.string("frames")])
        try emitter.emit(path: path.appending(escaped: "child"), interface: iface, member: "Second", [.string("x")])
        try emitter.emit(path: "/elsewhere", interface: other, member: "Third", [.int32(1)])
        // A marker that every rule above except byInterface sees last... sent on each
        // rule's own terms so each stream ends with a known message.
        try emitter.emit(path: path, interface: iface, member: "Second", [.string("frames")])
        try emitter.emit(path: "/end", interface: other, member: "End", [])

        let members = { (messages: [DBusMessage]) in messages.map { $0.member ?? "" } }
        #expect(members(try await Self.collect(byPath, count: 2)) == ["First", "Second"])
        #expect(members(try await Self.collect(byInterface, count: 2)) == ["Third", "End"])
        #expect(members(try await Self.collect(byMember, count: 2)) == ["Second", "Second"])
        let arg0 = try await Self.collect(byArg0, count: 2)
        #expect(members(arg0) == ["First", "Second"])
        #expect(arg0.allSatisfy { $0.body.first == .string("frames") })
        #expect(members(try await Self.collect(byNamespace, count: 3)) == ["First", "Second", "Second"])
    }

    @Test func aWellKnownSenderMatchesOnlyItsCurrentOwner() async throws {
        let owner = try await TestBus.connect()
        let impostor = try await TestBus.connect()
        let receiver = try await TestBus.connect()
        let name = "org.shmbus.Test.Owner.\(TestBus.uniqueSuffix())"
        #expect(try await owner.requestName(name) == .primaryOwner)
        let stream = try await receiver.signals(matching: MatchRule(sender: name, interface: Self.interface))
        try impostor.emit(path: "/x", interface: Self.interface, member: "Spoof", [])
        try owner.emit(path: "/x", interface: Self.interface, member: "Genuine", [])
        let got = try await Self.collect(stream, count: 1)
        #expect(got.map(\.member) == ["Genuine"])
    }

    @Test func endingAStreamRemovesItsMatchRule() async throws {
        // dbus-daemon's: the count comes from its Debug.Stats interface, which
        // dbus-broker does not implement (whatever SHMBUS_PRIVATE_BUS says).
        let bus = try await onOwnThread { try PrivateBus(daemon: .dbusDaemon) }
        let receiver = try await DBusConnection.connect(to: bus.bus)
        let observer = try await DBusConnection.connect(to: bus.bus)
        func matchRules() async throws -> UInt32 {
            let reply = try await observer.call(
                destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                interface: "org.freedesktop.DBus.Debug.Stats", method: "GetConnectionStats", [.string(receiver.uniqueName)])
            let stats = try reply.decode([String: DBusVariant].self)
            return try stats.decode("MatchRules", as: UInt32.self) ?? 0
        }
        let before = try await matchRules()
        var stream: DBusSignalStream? = try await receiver.signals(matching: MatchRule(interface: Self.interface, member: "Gone"))
        #expect(try await matchRules() == before + 1)
        let task = Task { [stream] in
            for try await _ in stream! {}
        }
        stream = nil
        task.cancel()
        _ = await task.result
        // RemoveMatch goes out from the connection's loop after the stream ends: wait
        // for it (generously: only a rule that is never removed should fail this).
        var after = try await matchRules()
        let deadline = ContinuousClock.now + .seconds(60)
        while after != before, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            after = try await matchRules()
        }
        #expect(after == before)
        withExtendedLifetime(bus) {}
    }

    @Test func nameOwnershipAndItsChanges() async throws {
        let a = try await TestBus.connect()
        let b = try await TestBus.connect()
        let watcher = try await TestBus.connect()
        let name = "org.shmbus.Test.Name.\(TestBus.uniqueSuffix())"
        let changes = try await watcher.nameOwnerChanges(for: name)
        #expect(try await a.requestName(name) == .primaryOwner)
        #expect(try await a.requestName(name) == .alreadyOwner)
        #expect(try await b.requestName(name, flags: [.doNotQueue]) == .exists)
        #expect(try await watcher.nameOwner(of: name) == a.uniqueName)
        #expect(try await a.releaseName(name) == .released)
        #expect(try await watcher.nameOwner(of: name) == nil)
        #expect(try await b.requestName(name) == .primaryOwner)
        b.close()
        var seen: [DBusConnection.NameOwnerChange] = []
        for try await change in changes {
            seen.append(change)
            if seen.count == 4 { break }
        }
        #expect(seen.map(\.name).allSatisfy { $0 == name })
        #expect(seen.map(\.newOwner) == [a.uniqueName, nil, b.uniqueName, nil])
        #expect(seen.map(\.oldOwner) == [nil, a.uniqueName, nil, b.uniqueName])
    }
}
