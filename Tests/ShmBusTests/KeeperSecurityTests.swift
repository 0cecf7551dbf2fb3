import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// The keeper's trust boundary (org.shmbus.Keeper1) against real peers: a system-like
/// bus with the shipped policy keeps other Unix users from owning or calling the keeper
/// at all; on a bus where anyone may own names, the registry ignores a keeper of another
/// user, and the keeper answers a caller of another user with AccessDenied. And what a
/// keeper hands back reaches a new registry whole, and checked. The other users are
/// real ones (Support/KeeperPeers.swift), made for each test.
@Suite(.serialized) struct KeeperSecurityTests {
    let shmbus = BuiltProducts.path("shmbus")

    /// A system-like bus with dbus/org.shmbus.Registry1.conf (SystemBusPolicyTests):
    /// another user may neither own the keeper's name nor call it, root may do both.
    @Test(.asRoot) func theShippedPolicyKeepsOtherUsersAwayFromTheKeeper() async throws {
        let bus = try await KeeperTestBus(system: true)
        defer { bus.stop() }
        let (address, watcher) = (bus.address, bus.watcher)
        let other = try UnixUser()
        defer { other.delete() }
        // While the name is free, so that only the policy can refuse it.
        let (squatted, _, squatError) = try await other.run("dbus-send", [
            "--bus=\(address)", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName",
            "string:\(ShmBusProtocol.keeperName)", "uint32:4",
        ])
        #expect(squatted != .exited(0) && squatError.contains("not allowed to own"), "\(squatError)")

        // It holds nothing, so by default it would leave after 30 s idle: on a loaded
        // machine that can come before the last call below.
        let keeper = try ChildProcess(
            shmbus, ["keeper", "--bus", address, "--idle-exit", "600", "--log-level", "warning"], stdout: .null, stderr: .inherit)
        defer { stop(keeper) }
        let owner = try #require(try await bus.waitForOwner(ShmBusProtocol.keeperName), "root may own the keeper's name")

        // The same calls as root reach the keeper: Hand answers, and a Keep without its
        // descriptor is refused by the keeper itself (its arguments are checked). As the
        // other user the bus refuses both, before the keeper sees them.
        let calls: [(member: String, arguments: [String], rootAnswer: String)] = [
            ("Hand", ["string:"], "array ["), ("Keep", ["string:x"], "Keep takes arguments of signature"),
        ]
        for call in calls {
            let send = ["--bus=\(address)", "--print-reply", "--dest=\(ShmBusProtocol.keeperName)", "/org/shmbus/Keeper1", "org.shmbus.Keeper1.\(call.member)"] + call.arguments
            let (_, rootOut, rootError) = try await BuiltProducts.run("dbus-send", send)
            #expect((rootOut + rootError).contains(call.rootAnswer), "root's \(call.member): \(rootOut)\(rootError)")
            let (status, out, error) = try await other.run("dbus-send", send)
            #expect(status != .exited(0), "\(call.member) as \(other.name): \(out)")
            #expect(error.contains("org.freedesktop.DBus.Error.AccessDenied") && !error.contains("org.shmbus.Error"), "\(error)")
        }
        let get = ["--address=\(address)", "get-property", ShmBusProtocol.keeperName, "/org/shmbus/Keeper1", "org.shmbus.Keeper1", "SegmentCount"]
        let (counted, _, countError) = try await other.run("busctl", get)
        #expect(counted != .exited(0), "the other user read the keeper's SegmentCount: \(countError)")
        #expect(try await watcher.nameOwner(of: ShmBusProtocol.keeperName) == owner)
    }

    /// On a bus where anyone may own any name, a keeper of another user that takes the
    /// name first is ignored: the registry logs it and never hands it a segment.
    @Test(.asRoot) func theRegistryIgnoresAKeeperOfAnotherUser() async throws {
        let bus = try await KeeperTestBus(system: false)
        defer { bus.stop() }
        let (address, watcher) = (bus.address, bus.watcher)
        let other = try UnixUser()
        defer { other.delete() }
        let squatter = try other.spawn(shmbus, ["keeper", "--bus", address, "--idle-exit", "600", "--log-level", "warning"])
        defer { stop(squatter) }
        let owner = try #require(try await bus.waitForOwner(ShmBusProtocol.keeperName))
        #expect(try await watcher.unixUser(of: owner) == other.uid)

        let log = bus.directory.appendingPathComponent("registry.log")
        let registry = try startRegistry(address, log: log)
        defer { stop(registry) }
        _ = try #require(try await bus.waitForOwner(ShmBusProtocol.registryName), "the registry did not start")
        var options = Publisher.Options()
        options.persistent = true
        let publisher = try await Publisher.open(channel: "keeper/squatted", on: .address(address), options: options)
        try publisher.publish(Array("not for the squatter".utf8))
        // A persistent registration is answered once the registry has tried the keeper.
        let segments = try await RegistryClient(connection: watcher).segments(of: "keeper/squatted")
        #expect(segments.map(\.name) == [publisher.currentSegment] && segments.allSatisfy(\.persistent))
        await publisher.close()

        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.contains { $0.contains("ignoring a keeper of another Unix user") && $0.contains("its-user=\(other.uid)") }, "\(lines)")
        let squatterHolds = try await Keeper1.Proxy(connection: watcher, destination: owner, path: ShmBusProtocol.keeperPath).segmentCount
        #expect(squatterHolds == 0)
        #expect(try await watcher.nameOwner(of: ShmBusProtocol.keeperName) == owner, "the squatter keeps the name; no keeper of ours")
    }

    /// The real keeper, started by the registry, answers every call of another user
    /// with AccessDenied and goes on holding the segment, a read-only descriptor; to
    /// its own user it refuses a writable descriptor and a record no registry writes.
    @Test(.asRoot) func theKeeperServesOnlyItsOwnUser() async throws {
        let bus = try await KeeperTestBus(system: false)
        defer { bus.stop() }
        let (address, watcher) = (bus.address, bus.watcher)
        let other = try UnixUser()
        defer { other.delete() }
        let registry = try startRegistry(address, log: bus.directory.appendingPathComponent("registry.log"))
        defer { stop(registry) }
        _ = try #require(try await bus.waitForOwner(ShmBusProtocol.registryName), "the registry did not start")
        var options = Publisher.Options()
        options.persistent = true
        let publisher = try await Publisher.open(channel: "keeper/guarded", on: .address(address), options: options)
        let segment = publisher.currentSegment
        // Registered, so the keeper holds it: the registry starts the keeper for it.
        let owner = try #require(try await watcher.nameOwner(of: ShmBusProtocol.keeperName), "no keeper after a persistent registration")
        #expect(try await watcher.unixUser(of: owner) == geteuid())

        for (member, arguments) in [("Hand", ["string:"]), ("Drop", ["string:\(segment)"]), ("OwnerLeft", ["string:\(segment)", "uint64:0"])] {
            let (status, out, error) = try await other.run(
                "dbus-send", ["--bus=\(address)", "--print-reply", "--dest=\(owner)", "/org/shmbus/Keeper1", "org.shmbus.Keeper1.\(member)"] + arguments)
            #expect(status != .exited(0) && error.contains("org.shmbus.Error.AccessDenied"), "\(member) as \(other.name): \(out)\(error)")
        }
        let keeper = Keeper1.Proxy(connection: watcher, destination: owner, path: ShmBusProtocol.keeperPath)
        let held = try await keeper.hand(after: "")
        #expect(held.map(\.record.segment) == [segment], "the other user's Drop must not have reached it")
        #expect(held.map { fcntl($0.fd.rawValue, F_GETFL) & O_ACCMODE } == [O_RDONLY], "the keeper holds a writable descriptor")

        // Its own user, but nothing a registry sends: a writable segment, a ttl past
        // what a registry accepts (it would trap the registry that took it back).
        let writer = try makeSegment(channel: "keeper/forged", chunks: [(key: "k", bytes: [1, 2, 3])])
        let forged = writer.current.id.name
        let readOnly = try writer.current.fileDescriptor.reopenReadOnly()
        let refused: [(UnixFileDescriptor, Keeper1.Record)] = [
            (writer.current.fileDescriptor, Keeper1.Record(segment: forged, channel: "keeper/forged", owner: "")),
            (readOnly, Keeper1.Record(segment: forged, channel: "keeper/forged", owner: "", ttl: .max)),
            (readOnly, Keeper1.Record(segment: forged, channel: "keeper/forged", owner: "org.shmbus.Registry1")),
        ]
        for (fd, record) in refused {
            let error = await #expect(throws: DBusError.self) { try await keeper.keep(fd: fd, record: record) }
            #expect(error?.name == "org.shmbus.Error.InvalidArgument", "\(String(describing: error))")
        }
        #expect(try await keeper.segmentCount == 1)
        await publisher.close()
    }

    /// More segments with doorbells (two descriptors each) than one message may carry
    /// on a bus with the default limit of 16: a registry killed and started again takes
    /// every one back, and the keeper is still there after.
    @Test(.asRoot) func aRestartedRegistryTakesBackMoreSegmentsThanOneMessageCarries() async throws {
        let bus = try await KeeperTestBus(system: true)
        defer { bus.stop() }
        let (address, watcher) = (bus.address, bus.watcher)
        let first = try startRegistry(address, log: bus.directory.appendingPathComponent("first.log"))
        defer { stop(first) }
        _ = try #require(try await bus.waitForOwner(ShmBusProtocol.registryName), "the registry did not start")
        var options = Publisher.Options()
        options.persistent = true
        var segments: Set<String> = []
        for index in 0..<12 {
            let publisher = try await Publisher.open(channel: "keeper/many/\(index)", on: .address(address), options: options)
            try publisher.publish(Array("kept \(index)".utf8))
            segments.insert(publisher.currentSegment)
            await publisher.close()
        }
        let keeper = try #require(try await watcher.nameOwner(of: ShmBusProtocol.keeperName), "no keeper after persistent registrations")
        first.signal(SIGKILL)
        first.waitUntilExit()

        let second = try startRegistry(address, log: bus.directory.appendingPathComponent("second.log"))
        defer { stop(second) }
        // The registry takes back what the keeper holds before it takes its name.
        _ = try #require(try await bus.waitForOwner(ShmBusProtocol.registryName), "the registry did not start again")
        let adopted = try await RegistryClient(connection: watcher).segments()
        #expect(Set(adopted.map(\.name)) == segments)
        #expect(try await watcher.nameOwner(of: ShmBusProtocol.keeperName) == keeper, "the keeper lost its connection handing them back")
    }

    /// A keeper of the registry's own user that hands back records no registry wrote:
    /// a ttl that used to trap the registry at start-up, an owner that is a well-known
    /// name, a read grant no registry accepts. The registry starts, adopts the good record, and tells the keeper to drop
    /// the others.
    @Test func aRegistryStartsDespiteForgedRecordsFromItsOwnUser() async throws {
        let bus = try PrivateBus()
        defer { bus.stop() }
        let writers = try (0..<4).map { try makeSegment(channel: "keeper/forged/\($0)", chunks: [(key: "k", bytes: [1])]) }
        func kept(_ index: Int, _ record: (String, String) -> Keeper1.Record) throws -> KeptSegment {
            let writer = writers[index]
            let record = record(writer.current.id.name, "keeper/forged/\(index)")
            return KeptSegment(fd: try writer.current.fileDescriptor.reopenReadOnly(), record: record)
        }
        let good = try kept(0) { Keeper1.Record(segment: $0, channel: $1, owner: "", ownerUid: getuid()) }
        let forged = [
            try kept(1) { Keeper1.Record(segment: $0, channel: $1, owner: "", ttl: .max) },
            try kept(2) { Keeper1.Record(segment: $0, channel: $1, owner: "org.freedesktop.DBus") },
            try kept(3) { Keeper1.Record(segment: $0, channel: $1, owner: "", ownerUid: getuid(), readers: ["nobody:1"]) },
        ]
        let keeper = ForgedKeeper(segments: ([good] + forged).sorted { $0.record.segment! < $1.record.segment! })
        let connection = try await DBusConnection.connect(to: bus.bus)
        defer { connection.close() }
        let export = try await connection.export([Keeper1.interface(implementedBy: keeper)], at: ShmBusProtocol.keeperPath)
        defer { export.cancel() }
        #expect(try await connection.requestName(ShmBusProtocol.keeperName) == .primaryOwner)

        let registry = try RegistryFixture.startDaemon(shmbus, address: bus.address)
        defer { stop(registry) }
        _ = try #require(try await KeeperTestBus.owner(of: ShmBusProtocol.registryName, on: connection), "the registry did not start")
        let adopted = try await RegistryClient(connection: connection).segments()
        #expect(adopted.map(\.name) == [good.record.segment])
        let deadline = ContinuousClock.now + .seconds(60)
        while keeper.dropped.withLock({ $0.count }) < forged.count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(Set(keeper.dropped.withLock { $0 }) == Set(forged.compactMap(\.record.segment)))
    }

    // MARK: Peers

    func startRegistry(_ address: String, log: URL) throws -> ChildProcess {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let file = try UnixFileDescriptor.open(log.path, O_WRONLY | O_APPEND)
        return try ChildProcess(
            shmbus, ["daemon", "--bus", address, "--log-level", "warning"], stdout: .null, stderr: .fileDescriptor(file))
    }

    func stop(_ process: ChildProcess) {
        process.signal(SIGTERM)
        process.waitUntilExit()
    }

}
