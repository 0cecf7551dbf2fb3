import DBus
import Foundation
import Locking
import TestSupport
import Testing

/// GLib's own ObjectManager client (`GDBusObjectManagerClient`, in gio_peer.py watch)
/// following a Swift object manager: its initial `GetManagedObjects` view, then
/// `InterfacesAdded`, `PropertiesChanged` (values and invalidations) and
/// `InterfacesRemoved` as the Swift side exports, changes and drops objects. GLib
/// checks senders, paths and signatures itself, and its property cache shows what
/// it understood.
@Suite struct GLibObjectManagerInteropTests {
    static let extraInterface = "org.shmbus.Test.Extra1"

    /// `{"path": {"interface": {"property": value}}}` as gio_peer.py prints it
    /// (json.dumps, sorted keys).
    static func view(_ objects: [(ObjectPath, String, [(String, String)])]) -> String {
        let entries = objects.sorted { $0.0 < $1.0 }.map { path, interface, properties in
            let props = properties.sorted { $0.0 < $1.0 }.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ")
            return "\"\(path)\": {\"\(interface)\": {\(props)}}"
        }
        return "{" + entries.joined(separator: ", ") + "}"
    }

    @Test func glibObjectManagerClientFollowsTheExports() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let child = InteropService.childInterfaceName
        let watcher = try GioPeer("watch", [try InteropService.address, service.name, service.root.rawValue])

        // GLib resolved the well-known name and read GetManagedObjects.
        let owner = try await watcher.expectLine("owner")
        #expect(owner == "\"\(service.connection.uniqueName)\"")
        let names = ["first", "second", "third"]
        let initial = try await watcher.expectLine("objects")
        #expect(
            initial == Self.view(service.children.enumerated().map { ($1, child, [("Index", "\($0)"), ("Name", "\"\(names[$0])\"")]) }))

        // A new object below the manager: InterfacesAdded with its properties.
        let color = Lock("red")
        let extraPath = service.root.appending(escaped: "extra")
        let extra = try await service.connection.export(
            [
                DBusInterface(Self.extraInterface) {
                    DBusProperty("Color", type: "s", get: { .string(color.withLock { $0 }) })
                    DBusProperty("Size", type: "t", get: { .uint64(1 << 40) })
                    DBusProperty(
                        "Secret", type: "s",
                        annotations: [DBusAnnotation("org.freedesktop.DBus.Property.EmitsChangedSignal", "invalidates")],
                        get: { .string("hidden") })
                    DBusMethod("Touch") { _ in [] }
                }
            ], at: extraPath)
        let added = try await watcher.expectLine("added")
        #expect(
            added
                == "[\"\(extraPath)\", {\"\(Self.extraInterface)\": {\"Color\": \"red\", \"Secret\": \"hidden\", \"Size\": 1099511627776}}]")

        // PropertiesChanged from the export: a value, and an invalidation.
        color.withLock { $0 = "blue" }
        try await extra.propertiesChanged(["Color", "Secret"], interface: Self.extraInterface)
        let changed = try await watcher.expectLine("changed")
        #expect(
            changed
                == "[\"\(extraPath)\", \"\(Self.extraInterface)\", {\"Color\": \"blue\"}, [\"Secret\"]]")

        // PropertiesChanged after a Set from another client.
        _ = try await service.swiftCall(
            client, path: service.children[1], interface: StandardInterfaces.propertiesName, "Set",
            [.string(child), .string("Name"), .variant(.string("renamed ✓"))])
        let set = try await watcher.expectLine("changed")
        #expect(
            set == "[\"\(service.children[1])\", \"\(child)\", {\"Name\": \"renamed ✓\"}, []]")

        // InterfacesRemoved when exports end: the new object, then an original child.
        extra.cancel()
        let removedExtra = try await watcher.expectLine("removed")
        #expect(removedExtra == "[\"\(extraPath)\"]")
        service.exports[1].cancel()
        let removedChild = try await watcher.expectLine("removed")
        #expect(removedChild == "[\"\(service.children[0])\"]")

        // GLib's final view: what is left, with the renamed child.
        let (status, rest, err) = try await watcher.finish()
        #expect(status == .exited(0), "\(err)")
        #expect(
            rest.split(separator: "\n").map(String.init) == [
                "final "
                    + Self.view([
                        (service.children[1], child, [("Index", "1"), ("Name", "\"renamed ✓\"")]),
                        (service.children[2], child, [("Index", "2"), ("Name", "\"third\"")]),
                    ])
            ], "\(rest) \(err)")
        // The Swift side agrees.
        let managed = try await service.swiftCall(
            client, interface: StandardInterfaces.objectManagerName, "GetManagedObjects"
        ).decode([ObjectPath: [String: [String: DBusVariant]]].self)
        #expect(Set(managed.keys) == [service.children[1], service.children[2]])
        #expect(managed[service.children[1]]?[child]?["Name"]?.value == .string("renamed ✓"))
    }

    @Test func anExportThatFailsIsNeitherAnnouncedNorWithdrawn() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        let announcements = try await client.signals(
            matching: MatchRule(
                sender: service.connection.uniqueName, interface: StandardInterfaces.objectManagerName, path: service.root))
        // A property getter that fails while InterfacesAdded is being built fails
        // the export.
        let bad = service.root.appending(escaped: "bad")
        await #expect(throws: DBusError.self) {
            _ = try await service.connection.export(
                [DBusInterface("org.shmbus.Test.Bad1") { DBusProperty("P", type: "s", get: { throw DBusError.failed("not ready") }) }],
                at: bad)
        }
        // The next export's InterfacesAdded is the first thing a watcher hears.
        let good = service.root.appending(escaped: "good")
        let kept = try await service.connection.export(
            [DBusInterface("org.shmbus.Test.Good1") { DBusProperty("P", type: "u", get: { .uint32(1) }) }], at: good)
        let heard = try await SignalTests.collect(announcements, count: 1)
        #expect(heard.first?.member == "InterfacesAdded", "\(heard.map { "\($0.member ?? "") \($0.body)" })")
        #expect(heard.count == 1)
        #expect(heard.first?.body.first == .objectPath(good))
        // The failed object is not left behind.
        let managed = try await service.swiftCall(client, interface: StandardInterfaces.objectManagerName, "GetManagedObjects")
            .decode([ObjectPath: [String: [String: DBusVariant]]].self)
        #expect(Set(managed.keys) == Set(service.children + [good]))
        _ = kept
    }
}
