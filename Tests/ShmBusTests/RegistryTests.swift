import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import TestSupport
import Testing

@Suite struct RegistryTests {
    @Test func registerListOpenLookUpAndUnregister() async throws {
        let fixture = try await RegistryFixture()
        let owner = try await fixture.client()
        let watcher = try await fixture.client()
        let events = try await watcher.events()
        let writer = try makeSegment(channel: "cams/front", chunks: [("frame", Array("first".utf8)), ("frame", Array("second".utf8)), ("", [1, 2, 3])])
        let (segment, path) = try await owner.registerSegment(channel: "cams/front", fd: writer.current.fileDescriptor)
        #expect(segment == writer.current.id.name)
        #expect(path == ShmBusProtocol.segmentPath(segment))
        let added = try await first(events) { if case .segmentAdded = $0 { true } else { false } }
        #expect(added == .segmentAdded(segment: segment, channel: "cams/front", path: path, generation: 1))

        let channels = try await watcher.channels()
        #expect(channels == [ChannelInfo(name: "cams/front", owner: owner.connection.uniqueName, currentSegment: segment, generation: 1, segmentCount: 1, bytes: 1 << 20)])
        let segments = try await watcher.segments(of: "cams/front")
        #expect(segments.count == 1)
        // Typed, not a bare `192 + 192 + 128`: with an untyped sum the type checker compares
        // through AnyHashable, and Swift 6.3.1's reabstraction thunk for that copies a
        // 9-byte UInt64? out of an 8-byte stack slot (AddressSanitizer: stack-buffer-overflow).
        #expect(segments.first?.committedBytes == UInt64(192 + 192 + 128))  // two keyed records, one without a key
        #expect(segments.first?.chunkCount == 2)
        #expect(segments.first?.state == "active")
        #expect(try await watcher.segments(of: nil) == segments)

        // Lookup finds the newest live chunk; its offset points at the payload.
        let found = try await watcher.lookup(channel: "cams/front", key: "frame")
        #expect(found.segment == segment && found.length == 6 && found.sequence == 2)
        let (fd, info) = try await watcher.openSegment(segment)
        #expect(info.channel == "cams/front")
        #expect(info.generation == 1)
        #expect(info.owner == owner.connection.uniqueName)
        #expect(fcntl(fd.rawValue, F_GETFL) & O_ACCMODE == O_RDONLY, "the registry hands out read-only descriptors")
        let reader = try SegmentReader(fd: fd)
        let bytes = Array(UnsafeRawBufferPointer(start: reader.mapping.base + Int(found.offset), count: Int(found.length)))
        #expect(String(decoding: bytes, as: UTF8.self) == "second")

        // Live properties are read from the segment itself.
        try [UInt8](repeating: 7, count: 100).withUnsafeBytes { _ = try writer.append($0, key: "frame") }
        let properties = try await watcher.segmentProperties(segment)
        #expect(properties.chunkCount == 2)
        #expect(properties.lastSequence == 4)
        #expect(properties.owner == owner.connection.uniqueName)
        #expect(properties.persistent == false)
        #expect(try await watcher.lookup(channel: "cams/front", key: "frame").sequence == 4)

        // Only the owner unregisters.
        let denied = await #expect(throws: ShmBusError.self) { try await watcher.unregisterSegment(segment) }
        #expect(denied?.code == .accessDenied)
        try await owner.unregisterSegment(segment)
        let removed = try await first(events) { if case .segmentRemoved = $0 { true } else { false } }
        #expect(removed == .segmentRemoved(segment: segment, channel: "cams/front", reason: "unregistered"))
        #expect(try await watcher.channels().isEmpty)
        let gone = await #expect(throws: ShmBusError.self) { _ = try await watcher.openSegment(segment) }
        #expect(gone?.code == .notFound)
    }

    @Test func replacesRetiresTheOldSegment() async throws {
        let fixture = try await RegistryFixture()
        let owner = try await fixture.client()
        let events = try await owner.events()
        let writer = try makeSegment(channel: "gc", chunks: [("a", [1]), ("b", [2])])
        let first = try await owner.registerSegment(channel: "gc", fd: writer.current.fileDescriptor).segment
        // A second active segment without `replaces` is refused.
        let other = try makeSegment(channel: "gc", chunks: [])
        let busy = await #expect(throws: ShmBusError.self) {
            _ = try await owner.registerSegment(channel: "gc", fd: other.current.fileDescriptor)
        }
        #expect(busy?.code == .channelBusy)
        var segmentNames = [first]
        for _ in 0..<3 {
            let rotation = try writer.collectGarbage()
            let next = try await owner.registerSegment(
                channel: "gc", fd: rotation.new.fileDescriptor, options: .init(replaces: segmentNames.last!)).segment
            writer.retire(rotation)
            segmentNames.append(next)
        }
        let replaced = try await RegistryTestsSupport.collect(events, count: 4, within: .seconds(60)) { event in
            if case .segmentReplaced = event { true } else if case .segmentRemoved = event { true } else { false }
        }
        #expect(replaced.contains(.segmentReplaced(old: segmentNames[0], new: segmentNames[1], channel: "gc", generation: 2)))
        #expect(replaced.contains(.segmentRemoved(segment: segmentNames[0], channel: "gc", reason: "replaced")))
        // The channel keeps its current segment and the one it replaced.
        let listed = try await owner.segments(of: "gc")
        #expect(listed.map(\.name) == [segmentNames[2], segmentNames[3]])
        #expect(listed.map(\.state) == ["retired", "active"])
        let retired = try await owner.segmentProperties(segmentNames[2])
        #expect(retired.replacedBy == segmentNames[3])
        #expect(try await owner.channels().first?.generation == 4)
        #expect(try await owner.lookup(channel: "gc", key: "b").segment == segmentNames[3])
    }

    @Test func introspectionMatchesTheInterfaceFiles() async throws {
        let fixture = try await RegistryFixture()
        let owner = try await fixture.client()
        let writer = try makeSegment(channel: "intro", chunks: [])
        let (segment, _) = try await owner.registerSegment(channel: "intro", fd: writer.current.fileDescriptor)
        let onDisk = try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("dbus/org.shmbus.Registry1.xml"), encoding: .utf8)
        let file = try DBusIntrospection(xml: onDisk)
        let objects: [(ObjectPath, String)] = [
            (ShmBusProtocol.registryPath, Registry1.name),
            (ShmBusProtocol.channelPath("intro"), Channel1.name),
            (ShmBusProtocol.segmentPath(segment), Segment1.name),
        ]
        for (path, name) in objects {
            let xml = try await owner.connection.call(
                destination: ShmBusProtocol.registryName, path: path, interface: StandardInterfaces.introspectableName,
                method: "Introspect"
            ).decode(String.self)
            let served = try #require(try DBusIntrospection(xml: xml).interface(named: name), "\(path) lacks \(name)")
            let declared = try #require(file.interface(named: name))
            #expect(served.introspectionXML() == declared.introspectionXML(), "\(path): Introspect differs from dbus/")
        }
        let root = try await owner.connection.call(
            destination: ShmBusProtocol.registryName, path: ShmBusProtocol.registryPath,
            interface: StandardInterfaces.introspectableName, method: "Introspect"
        ).decode(String.self)
        #expect(root.contains(StandardInterfaces.objectManagerName))
        #expect(root.contains("<node name=\"channel\"/>") && root.contains("<node name=\"segment\"/>"))
    }

    @Test func objectManagerShowsTheWholeRegistry() async throws {
        let fixture = try await RegistryFixture()
        let owner = try await fixture.client()
        let writer = try makeSegment(channel: "om/x", chunks: [("k", [1])])
        let (segment, _) = try await owner.registerSegment(channel: "om/x", fd: writer.current.fileDescriptor, options: .init(persistent: true))
        let managed = try await owner.connection.call(
            destination: ShmBusProtocol.registryName, path: ShmBusProtocol.registryPath,
            interface: StandardInterfaces.objectManagerName, method: "GetManagedObjects"
        ).decode([ObjectPath: [String: [String: DBusVariant]]].self)
        let channel = try #require(managed[ShmBusProtocol.channelPath("om/x")]?[Channel1.name])
        #expect(channel["Name"]?.value == .string("om/x"))
        #expect(channel["CurrentSegment"]?.value == .string(segment))
        let seg = try #require(managed[ShmBusProtocol.segmentPath(segment)]?[Segment1.name])
        #expect(seg["Persistent"]?.value == .boolean(true))
        #expect(seg["Capacity"]?.value == .uint64(1 << 20))
        #expect(seg["Channel"]?.value == .string("om/x"))
    }

    @Test func quotasAreEnforcedPerConnection() async throws {
        let fixture = try await RegistryFixture(daemonArguments: ["--max-segments-per-connection", "2", "--max-bytes-per-connection", "3MiB"])
        let owner = try await fixture.client()
        var writers: [ChannelWriter] = []
        for i in 0..<2 {
            writers.append(try makeSegment(channel: "quota/\(i)", chunks: []))
            _ = try await owner.registerSegment(channel: "quota/\(i)", fd: writers[i].current.fileDescriptor)
        }
        let third = try makeSegment(channel: "quota/2", chunks: [])
        let error = await #expect(throws: ShmBusError.self) {
            _ = try await owner.registerSegment(channel: "quota/2", fd: third.current.fileDescriptor)
        }
        #expect(error?.code == .quotaExceeded)
        #expect(error?.message.contains("limit 2") == true)
        // Another connection has its own quota; bytes are counted too.
        let other = try await fixture.client()
        let big = try makeSegment(channel: "quota/big", chunks: [], capacity: 4 << 20)
        let bytes = await #expect(throws: ShmBusError.self) {
            _ = try await other.registerSegment(channel: "quota/big", fd: big.current.fileDescriptor)
        }
        #expect(bytes?.code == .quotaExceeded)
        _ = try await other.registerSegment(channel: "quota/2", fd: third.current.fileDescriptor)
    }
}

enum RegistryTestsSupport {
    /// Up to `count` events matching `predicate`; what came by `within`, a bound against
    /// events that never come.
    static func collect(
        _ events: AsyncThrowingStream<RegistryClient.Event, any Error>, count: Int, within: Duration,
        where predicate: @escaping @Sendable (RegistryClient.Event) -> Bool
    ) async throws -> [RegistryClient.Event] {
        try await withThrowingTaskGroup(of: [RegistryClient.Event].self) { group in
            let collected = Lock<[RegistryClient.Event]>([])
            group.addTask {
                for try await event in events where predicate(event) {
                    let n = collected.withLock { $0.append(event); return $0.count }
                    if n >= count { break }
                }
                return []
            }
            group.addTask {
                try await Task.sleep(for: within)
                return []
            }
            _ = try await group.next()
            group.cancelAll()
            return collected.withLock { $0 }
        }
    }
}

import Locking
