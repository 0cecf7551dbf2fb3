import DBus
import TestSupport
import Locking
import Testing

@Suite struct ExportTests {
    final class Store: Sendable {
        let title = Lock("first")
        let count = Lock<UInt32>(0)
    }

    static func interface(_ store: Store) -> DBusInterface {
        DBusInterface("org.shmbus.Test.Thing") {
            DBusAnnotation("org.shmbus.Test.Doc", "a thing with properties")
            DBusMethod("Bump", outputs: [.init("count", "u")]) { _ in
                [.uint32(store.count.withLock { $0 += 1; return $0 })]
            }
            DBusSignal("Bumped", arguments: [.init("count", "u")])
            DBusProperty("Title", type: "s", get: { .string(store.title.withLock { $0 }) }, set: { value in
                guard case .string(let s) = value, !s.isEmpty else {
                    throw DBusError.invalidArgument("Title must be a non-empty string")
                }
                store.title.withLock { $0 = s }
            })
            DBusProperty("Count", type: "u", get: { .uint32(store.count.withLock { $0 }) })
            DBusProperty(
                "Constant", type: "x", annotations: [.init("org.freedesktop.DBus.Property.EmitsChangedSignal", "const")],
                get: { .int64(-1) })
        }
    }

    @Test func propertiesGetGetAllSetAndPropertiesChanged() async throws {
        let service = try await TestBus.connect()
        let client = try await TestBus.connect()
        let store = Store()
        let declaration = Self.interface(store)
        let export = try await service.export([declaration], at: "/org/shmbus/test/thing")
        let proxy = declaration.proxy(on: client, destination: service.uniqueName, path: "/org/shmbus/test/thing")
        #expect(try await proxy.property("Title") == .string("first"))
        let changes = try await client.signals(
            matching: MatchRule(
                sender: service.uniqueName, interface: StandardInterfaces.propertiesName, member: "PropertiesChanged",
                path: "/org/shmbus/test/thing"))
        try await proxy.setProperty("Title", .string("second"))
        #expect(store.title.withLock { $0 } == "second")
        #expect(try await proxy.property("Title") == .string("second"))
        let all = try await proxy.allProperties()
        #expect(all == ["Title": .string("second"), "Count": .uint32(0), "Constant": .int64(-1)])

        // Wrong type, read-only, unknown property, and the setter's own error.
        await #expect(throws: DBusError.self) {
            _ = try await client.call(
                destination: service.uniqueName, path: "/org/shmbus/test/thing", interface: StandardInterfaces.propertiesName,
                method: "Set", [.string(declaration.name), .string("Title"), .variant(.uint32(1))])
        }
        do {
            _ = try await client.call(
                destination: service.uniqueName, path: "/org/shmbus/test/thing", interface: StandardInterfaces.propertiesName,
                method: "Set", [.string(declaration.name), .string("Count"), .variant(.uint32(1))])
            Issue.record("Count is read-only")
        } catch let error as DBusError {
            #expect(error.name == DBusError.propertyReadOnlyName)
        }
        do {
            _ = try await proxy.property("Nope")
            Issue.record("the proxy should refuse an undeclared property")
        } catch let error as DBusError {
            #expect(error.name == DBusError.invalidArgsName)
        }
        do {
            try await proxy.setProperty("Title", .string(""))
            Issue.record("the setter refuses empty titles")
        } catch let error as DBusError {
            #expect(error.message == "Title must be a non-empty string")
        }

        // Only the successful Set signalled, with the new value.
        var iterator = changes.makeAsyncIterator()
        let signal = try await iterator.next()
        #expect(signal?.body.first == .string(declaration.name))
        #expect(signal?.body.dropFirst().first == DBusValue.dictionary(
            key: .string, value: .variant, [DBusDictEntry(key: .string("Title"), value: .variant(.string("second")))]))

        // propertiesChanged from the service side.
        _ = try await proxy.call("Bump")
        try await export.propertiesChanged(["Count"], interface: declaration.name)
        let bumped = try await iterator.next()
        #expect(bumped?.body.dropFirst().first == DBusValue.dictionary(
            key: .string, value: .variant, [DBusDictEntry(key: .string("Count"), value: .variant(.uint32(1)))]))
        _ = export
    }

    @Test func objectManagerAnnouncesAndListsChildren() async throws {
        let service = try await TestBus.connect()
        let client = try await TestBus.connect()
        let root: ObjectPath = "/org/shmbus/test/managed"
        let manager = try await service.export([], at: root, objectManager: true)
        let added = try await client.signals(
            matching: MatchRule(sender: service.uniqueName, interface: StandardInterfaces.objectManagerName, path: root))
        var events = added.makeAsyncIterator()

        let store = Store()
        var child: DBusExport? = try await service.export([Self.interface(store)], at: root.appending(escaped: "one"))
        let announced = try await events.next()
        #expect(announced?.member == "InterfacesAdded")
        #expect(announced?.body.first == .objectPath(root.appending(escaped: "one")))

        let managed = try await client.call(
            destination: service.uniqueName, path: root, interface: StandardInterfaces.objectManagerName,
            method: "GetManagedObjects")
        let objects = try managed.decode([ObjectPath: [String: [String: DBusVariant]]].self)
        #expect(objects.keys.sorted() == [root.appending(escaped: "one")])
        #expect(objects[root.appending(escaped: "one")]?["org.shmbus.Test.Thing"]?["Title"] == DBusVariant(.string("first")))

        // Introspection of the manager lists the child node and the ObjectManager interface.
        let xml = try await client.call(
            destination: service.uniqueName, path: root, interface: StandardInterfaces.introspectableName,
            method: "Introspect"
        ).decode(String.self)
        #expect(xml.contains("<node name=\"one\"/>"))
        #expect(xml.contains("org.freedesktop.DBus.ObjectManager"))
        // So does an intermediate node that is not exported itself.
        let parentXML = try await client.call(
            destination: service.uniqueName, path: "/org/shmbus", interface: StandardInterfaces.introspectableName,
            method: "Introspect"
        ).decode(String.self)
        #expect(parentXML.contains("<node name=\"test\"/>"))

        // Releasing the handle unexports the object and announces it.
        child = nil
        let removed = try await events.next()
        #expect(removed?.member == "InterfacesRemoved")
        #expect(removed?.body == [.objectPath(root.appending(escaped: "one")), .array(.string, [.string("org.shmbus.Test.Thing")])])
        do {
            _ = try await client.call(
                destination: service.uniqueName, path: root.appending(escaped: "one"), interface: "org.shmbus.Test.Thing",
                method: "Bump")
            Issue.record("the object should be gone")
        } catch let error as DBusError {
            #expect(error.name == DBusError.unknownObjectName)
        }
        _ = child
        _ = manager
    }

    @Test func exportsAreCheckedAndUnique() async throws {
        let service = try await TestBus.connect()
        let store = Store()
        let path: ObjectPath = "/org/shmbus/test/unique"
        let first = try await service.export([Self.interface(store)], at: path)
        await #expect(throws: DBusError.self) { _ = try await service.export([Self.interface(store)], at: path) }
        let noHandler = DBusInterface("org.shmbus.Test.Bare") { DBusMethod("M") }
        await #expect(throws: DBusError.self) { _ = try await service.export([noHandler], at: "/org/shmbus/test/bare") }
        let badName = DBusInterface("not-valid") { DBusSignal("S") }
        await #expect(throws: DBusError.self) { _ = try await service.export([badName], at: "/org/shmbus/test/bad") }
        first.cancel()
        // After cancel the path is free again.
        let again = try await service.export([Self.interface(store)], at: path)
        _ = again
    }

    @Test func signalsFromAnExportAreCheckedAgainstTheDeclaration() async throws {
        let service = try await TestBus.connect()
        let client = try await TestBus.connect()
        let store = Store()
        let export = try await service.export([Self.interface(store)], at: "/org/shmbus/test/emitter")
        let stream = try await client.signals(matching: MatchRule(sender: service.uniqueName, member: "Bumped"))
        #expect(throws: DBusError.self) { try export.emit("Bumped", [.string("wrong")]) }
        #expect(throws: DBusError.self) { try export.emit("Undeclared", []) }
        try export.emit("Bumped", [.uint32(9)])
        var iterator = stream.makeAsyncIterator()
        let got = try await iterator.next()
        #expect(got?.body == [.uint32(9)])
        #expect(got?.path == "/org/shmbus/test/emitter")
    }
}
