import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// Persistent data outlive the registry: the daemon SIGKILLed again and again, at
/// random moments (some while it is still starting and taking segments back from the
/// keeper), restarted by hand or by D-Bus activation, while persistent channels of
/// publishers that left long ago exist, one publisher stays connected and publishes
/// between restarts, and that one leaves while no registry runs. After every restart
/// every key returns the same bytes and sequence, and every segment the same expiry.
@Suite(.serialized) struct PersistenceTests {
    /// The newest chunk the test expects for each channel and key.
    typealias Expected = [String: [String: (bytes: [UInt8], sequence: UInt64)]]

    /// A real `shmbus publish --persistent` process: it publishes and leaves.
    static func publish(
        _ fixture: RegistryFixture, channel: String, key: String, bytes: [UInt8], ttl: Int? = nil
    ) async throws -> UInt64 {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-persist-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let ttlArguments = ttl.map { ["--ttl", "\($0)"] } ?? []
        let (status, out, err) = try await fixture.run(
            ["publish", "--channel", channel, "--key", key, "--persistent"] + ttlArguments + [file.path])
        try #require(status == .exited(0), "\(err)")
        // "segment … offset … length … sequence N"
        return try #require(out.split(separator: " ").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
    }

    static func bytes(_ label: String, count: Int) -> [UInt8] {
        var out = [UInt8](label.utf8)
        while out.count < count { out.append(UInt8(truncatingIfNeeded: out.count &* 31 &+ label.utf8.count)) }
        return out
    }

    /// Checks every expected key, and that each segment's expiry is the one first
    /// seen; returns a problem, or nil.
    static func check(_ client: RegistryClient, _ expected: Expected, expiries: inout [String: UInt64]) async throws -> String? {
        for (channel, keys) in expected {
            for (key, want) in keys {
                let got: Chunk
                do {
                    got = try await client.latest(channel: channel, key: key)
                } catch {
                    return "\(channel)/\(key): \(error)"
                }
                if got.sequence != want.sequence { return "\(channel)/\(key): sequence \(got.sequence), expected \(want.sequence)" }
                if got.bytes != want.bytes { return "\(channel)/\(key): other bytes (\(got.count) of \(want.bytes.count))" }
            }
            let segments = try await client.segments(of: channel)
            if segments.count > 2 { return "\(channel) holds \(segments.count) segments" }
            for segment in segments {
                let expires = try await ShmBusProtocol.segment(segment.name, on: client.connection).expires
                if let first = expiries[segment.name], first != expires {
                    return "segment \(segment.name) of \(channel): expires \(expires), was \(first)"
                }
                expiries[segment.name] = expires
            }
        }
        return nil
    }

    static func pid(of name: String, on connection: DBusConnection) async throws -> pid_t? {
        guard let owner = try await connection.nameOwner(of: name) else { return nil }
        let pid = try await connection.call(
            destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
            method: "GetConnectionUnixProcessID", [.string(owner)]
        ).decode(UInt32.self)
        return pid_t(pid)
    }

    static func keptCount(_ connection: DBusConnection) async throws -> UInt32 {
        try await ShmBusProtocol.keeper(on: connection).segmentCount
    }

    @Test(.timeLimit(.minutes(6)), arguments: DaemonRestartTests.Restart.allCases)
    func persistentChannelsSurviveTheRegistryKilledAgainAndAgain(_ restart: DaemonRestartTests.Restart) async throws {
        let services = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-persist-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: services, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: services) }
        let shmbus = BuiltProducts.path("shmbus")
        if restart == .activation {
            let (status, _, err) = try await BuiltProducts.run(shmbus, ["install-service", "--directory", services.path, "--exec", shmbus])
            try #require(status == .exited(0), "\(err)")
        }
        let fixture = try await RegistryFixture(startDaemon: false, serviceDirectories: restart == .activation ? [services.path] : [])
        let client = try await fixture.client()
        var handStarted: ChildProcess?
        defer { handStarted?.signal(SIGKILL) }
        func start() async throws {
            switch restart {
            case .byHand: handStarted = try RegistryFixture.startDaemon(shmbus, address: fixture.address)
            case .activation: _ = try await client.channels()
            }
        }
        func kill() async throws {
            if let process = handStarted {
                process.signal(SIGKILL)
                _ = await process.exit()
                handStarted = nil
            } else if let pid = try await Self.pid(of: ShmBusProtocol.registryName, on: client.connection) {
                Glibc.kill(pid, SIGKILL)
            }
            _ = await Reliability.waitUntil(.seconds(60)) { (try? await client.connection.nameOwner(of: ShmBusProtocol.registryName)) == nil }
        }

        // Publishers that left: a lineage of one key (two segments), keys added one
        // publish at a time with a ttl, and several keys from one publisher.
        try await start()
        try await fixture.waitForRegistry()
        var expected: Expected = [:]
        for round in 0..<3 {
            let bytes = Self.bytes("shot \(round)", count: 200_000)
            expected["shots", default: [:]]["latest"] = (bytes, try await Self.publish(fixture, channel: "shots", key: "latest", bytes: bytes))
        }
        for key in ["a", "b", "c"] {
            let bytes = Self.bytes("thumb \(key)", count: 5_000)
            expected["thumbs", default: [:]][key] = (bytes, try await Self.publish(fixture, channel: "thumbs", key: key, bytes: bytes, ttl: 3_600))
        }
        var options = Publisher.Options()
        options.persistent = true
        options.capacity = 1 << 20
        let frames = try await Publisher.open(channel: "frames", on: .address(fixture.address), options: options)
        for index in 0..<5 {
            let bytes = Self.bytes("frame \(index)", count: 1_000 * (index + 1))
            expected["frames", default: [:]]["k\(index)"] = (bytes, try frames.publish(bytes, key: "k\(index)").sequence)
        }
        await frames.close()
        // One that stays and publishes between restarts, and leaves while none runs.
        var live: Publisher? = try await Publisher.open(channel: "live", on: .address(fixture.address), options: options)
        func tick(_ label: String) throws {
            guard let live else { return }
            let bytes = Self.bytes(label, count: 3_000)
            expected["live", default: [:]]["tick"] = (bytes, try live.publish(bytes, key: "tick").sequence)
        }
        try tick("tick start")
        await live?.flush()

        var expiries: [String: UInt64] = [:]
        let first = try await Self.check(client, expected, expiries: &expiries)
        #expect(first == nil, "before any restart: \(first ?? "")")
        var survived = 0
        var killedWhileStarting = 0
        let rounds = Reliability.count(quick: 20, full: 100)
        for round in 0..<rounds {
            try await kill()
            if round == rounds / 2 {
                await live?.close()
                live = nil
            } else {
                try tick("tick \(round)")
            }
            try await start()
            if restart == .byHand, round % 3 == 1 {
                // At a random moment of its start: maybe before it asked the keeper,
                // maybe while taking segments back, maybe after it took its name.
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...250)))
                killedWhileStarting += 1
                continue
            }
            try await fixture.waitForRegistry()
            // The live publisher registers again on its own; wait for it, then check.
            if let live {
                _ = await Reliability.waitUntil(.seconds(60)) {
                    (try? await client.channels().first { $0.name == "live" }?.owner) == live.connection.uniqueName
                }
                await live.flush()
            }
            let problem = try await Self.check(client, expected, expiries: &expiries)
            #expect(problem == nil, "after restart \(round + 1): \(problem ?? "")")
            if problem == nil { survived += 1 }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...100)))
        }
        try await kill()
        try await start()
        try await fixture.waitForRegistry()
        let last = try await Self.check(client, expected, expiries: &expiries)
        #expect(last == nil, "after the last restart: \(last ?? "")")
        let channels = try await client.channels()
        #expect(channels.first { $0.name == "live" }?.owner == "", "the live publisher left while no registry ran")
        let held = try await client.segments().count
        #expect(try await Self.keptCount(client.connection) == UInt32(held), "the keeper holds what the registry holds")
        Reliability.report(
            "registry-sigkill-persistent-\(restart.rawValue)",
            ["kills": rounds + 1, "killed_while_starting": killedWhileStarting, "checked_restarts_survived": survived + (last == nil ? 1 : 0),
             "channels": expected.count, "keys": expected.values.map(\.count).reduce(0, +), "segments": held])
    }

    @Test(.timeLimit(.minutes(5))) func aTtlKeepsItsRemainingTimeAcrossARestartAndExpiresThenEverywhere() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        var daemon = try #require(fixture.daemon)
        var restarted: [ChildProcess] = []
        defer { for process in restarted { process.signal(SIGKILL) } }
        // The restart must be over before the ttl is: whether it was is told by the
        // clock read after the restarted registry answered (a loaded machine can make a
        // daemon's start take longer than any short ttl). A restart that ended too late
        // proves nothing, and the round is made again, on a channel of its own, with a
        // longer ttl.
        var checked = false
        var ttl = 0
        for (round, seconds) in [4, 15, 60].enumerated() {
            ttl = seconds
            let channel = "brief/\(round)"
            _ = try await Self.publish(fixture, channel: channel, key: "k", bytes: Self.bytes("brief", count: 100), ttl: ttl)
            let segment = try #require(try await client.segments(of: channel).first)
            let expires = try await ShmBusProtocol.segment(segment.name, on: client.connection).expires
            #expect(expires != 0)
            daemon.signal(SIGKILL)
            daemon.waitUntilExit()
            try await Task.sleep(for: .seconds(1))
            daemon = try RegistryFixture.startDaemon(fixture.shmbus, address: fixture.address)
            restarted.append(daemon)
            try await fixture.waitForRegistry()
            let again = try? await ShmBusProtocol.segment(segment.name, on: client.connection).expires
            // `expires` is in microseconds of the real-time clock.
            if RealtimeClock.now() / 1000 < expires {
                // The registry's own expiry when its word reached the keeper before the
                // kill; else the keeper's, from the same departure seen on the bus (a few
                // milliseconds apart at most). A new ttl would be a second or more later.
                let drift = again.map { $0 > expires ? $0 - expires : expires - $0 }
                #expect(drift.map { $0 < 500_000 } == true, "the same expiry (\(expires)), not a new ttl: \(again.map(String.init) ?? "none")")
                checked = true
                break
            }
            print("aTtlKeepsItsRemainingTime: the restart ended after the ttl of \(ttl) s; again with a longer one")
        }
        #expect(checked, "no restart ended within a ttl of 60 s")
        let gone = await Reliability.waitUntil(.seconds(ttl + 60)) { (try? await client.channels().isEmpty) == true }
        #expect(gone != nil, "the segment expired")
        let dropped = await Reliability.waitUntil(.seconds(60)) {
            ((try? await ShmBusProtocol.keeper(on: client.connection).segmentCount) ?? 0) == 0
        }
        #expect(dropped != nil, "the keeper let go of the expired segment")
    }

    @Test(.timeLimit(.minutes(5))) func aKilledKeeperIsReplacedAndGivenEverythingAgain() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        var expected: Expected = [:]
        for key in ["x", "y"] {
            let bytes = Self.bytes("kept \(key)", count: 10_000)
            expected["kept", default: [:]][key] = (bytes, try await Self.publish(fixture, channel: "kept", key: key, bytes: bytes))
        }
        let keeper = try #require(try await Self.pid(of: ShmBusProtocol.keeperName, on: client.connection))
        kill(keeper, SIGKILL)
        let replaced = await Reliability.waitUntil(.seconds(60)) {
            guard let pid = try? await Self.pid(of: ShmBusProtocol.keeperName, on: client.connection), pid != keeper else { return false }
            return (try? await Self.keptCount(client.connection)) == UInt32((try? await client.segments().count) ?? -1)
        }
        #expect(replaced != nil, "a new keeper holds every persistent segment")
        try #require(fixture.daemon).signal(SIGKILL)
        fixture.daemon?.waitUntilExit()
        let again = try RegistryFixture.startDaemon(fixture.shmbus, address: fixture.address)
        defer { again.signal(SIGKILL) }
        try await fixture.waitForRegistry()
        var expiries: [String: UInt64] = [:]
        let problem = try await Self.check(client, expected, expiries: &expiries)
        #expect(problem == nil, "\(problem ?? "")")
    }

    @Test func theKeeperServesItsInterfaceFileAndBusctlReadsIt() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        _ = try await Self.publish(fixture, channel: "intro", key: "k", bytes: [1, 2, 3])
        let xml = try await client.connection.call(
            destination: ShmBusProtocol.keeperName, path: ShmBusProtocol.keeperPath, interface: StandardInterfaces.introspectableName,
            method: "Introspect"
        ).decode(String.self)
        let onDisk = try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("dbus/org.shmbus.Keeper1.xml"), encoding: .utf8)
        let served = try #require(try DBusIntrospection(xml: xml).interface(named: Keeper1.name))
        let declared = try #require(try DBusIntrospection(xml: onDisk).interface(named: Keeper1.name))
        #expect(served.introspectionXML() == declared.introspectionXML(), "Introspect differs from dbus/org.shmbus.Keeper1.xml")
        let busctl = try ChildProcess(
            "busctl", ["--address=\(fixture.address)", "get-property", ShmBusProtocol.keeperName, ShmBusProtocol.keeperPath.rawValue, Keeper1.name, "SegmentCount"],
            stdout: .pipe)
        let (out, _) = try await busctl.collectOutput()
        #expect(await busctl.exit() == .exited(0))
        #expect(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "u 1")
        // Unregistering is answered once the keeper let go: it cannot come back.
        let segment = try #require(try await client.segments(of: "intro").first)
        try await client.unregisterSegment(segment.name)
        #expect(try await Self.keptCount(client.connection) == 0)
    }
}
