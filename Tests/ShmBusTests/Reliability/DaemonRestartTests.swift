import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// The registry daemon killed with SIGKILL while a publisher publishes and a subscriber
/// reads, then started again by hand or by D-Bus activation: the publisher registers
/// again within 2 s, and the subscriber goes on from its last sequence, reporting what
/// collection dropped meanwhile as gaps of exact size.
@Suite(.serialized) struct DaemonRestartTests {
    enum Restart: String, CaseIterable, Sendable {
        case byHand = "by-hand"
        case activation
    }

    /// Publishes 1 KiB test payloads into 256 KiB segments (a collection every ~200
    /// chunks) about every 100 µs until cancelled.
    static func publishing(_ publisher: Publisher) -> Task<Void, any Error> {
        Task.detached {
            while !Task.isCancelled {
                for _ in 0..<10 {
                    let next = publisher.lastSequence + 1
                    try publisher.publish(length: 1024) { TestPayload.fill($0, sequence: next) }
                }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    @Test(.timeLimit(.minutes(5)), arguments: Restart.allCases)
    func publishersAndSubscribersOutliveTheDaemon(_ restart: Restart) async throws {
        let services = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-restart-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: services, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: services) }
        let shmbus = BuiltProducts.path("shmbus")
        if restart == .activation {
            let (status, _, err) = try await BuiltProducts.run(shmbus, ["install-service", "--directory", services.path, "--exec", shmbus])
            try #require(status == .exited(0), "\(err)")
        }
        let fixture = try await RegistryFixture(startDaemon: false, serviceDirectories: restart == .activation ? [services.path] : [])
        let watcher = try await fixture.client()
        var handStarted: ChildProcess?
        defer { handStarted?.signal(SIGKILL) }

        /// Starts the daemon; returns when it owns its name.
        func startDaemon() async throws {
            switch restart {
            case .byHand:
                handStarted = try RegistryFixture.startDaemon(shmbus, address: fixture.address)
                try await fixture.waitForRegistry()
            case .activation:
                // Any call to the name makes the bus start it.
                _ = try await watcher.channels()
            }
        }
        /// The running daemon's unique name and process.
        func daemon() async throws -> (owner: String, pid: pid_t) {
            let owner = try #require(try await watcher.connection.nameOwner(of: ShmBusProtocol.registryName))
            let reply = try await watcher.connection.call(
                destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                method: "GetConnectionUnixProcessID", [.string(owner)])
            guard case .uint32(let pid)? = reply.first else { throw ShmBusError(.bus, "no process ID for \(owner)") }
            return (owner, pid_t(pid))
        }

        try await startDaemon()
        var options = Publisher.Options()
        options.capacity = 256 << 10
        let publisher = try await Publisher.open(channel: "outlives", on: .address(fixture.address), options: options)
        let subscriber = try await Subscriber.open(channel: "outlives", on: .address(fixture.address), options: .init(start: .oldest))
        let audit = Lock(StreamAudit())
        let reading = Task {
            for try await event in subscriber { audit.withLock { $0.record(event) } }
        }
        let loop = Self.publishing(publisher)

        // From the new daemon owning its name to the publisher's segment being added
        // there, both timed where the signals arrive (the connection's loop thread), so
        // that neither the daemon's start-up nor a busy test process counts. Signals of
        // the killed daemon (its name's release, a SegmentAdded still on its way) do not
        // count: the times are cleared before the kill and only a new daemon sets them,
        // so that one activated at once, by the publisher's next call, is timed too.
        let appeared = Lock<ContinuousClock.Instant?>(nil)
        let added = Lock<ContinuousClock.Instant?>(nil)
        let killedOwner = Lock<String?>(nil)
        let ownerWatch = try await watcher.connection.onSignal(
            matching: MatchRule(
                sender: "org.freedesktop.DBus", interface: "org.freedesktop.DBus", member: "NameOwnerChanged",
                path: "/org/freedesktop/DBus"
            ).matching(argument: 0, ShmBusProtocol.registryName)
        ) { message in
            if case .string(let owner)? = message.body.last, !owner.isEmpty, owner != killedOwner.withLock({ $0 }) {
                appeared.withLock { $0 = $0 ?? .now }
            }
        }
        let addedWatch = try await watcher.connection.onSignal(
            matching: MatchRule(
                sender: ShmBusProtocol.registryName, interface: Registry1.name, member: "SegmentAdded",
                path: ShmBusProtocol.registryPath
            ).matching(argument: 1, "outlives")
        ) { message in
            if message.sender != killedOwner.withLock({ $0 }) { added.withLock { $0 = $0 ?? .now } }
        }
        defer {
            ownerWatch.cancel()
            addedWatch.cancel()
        }

        var reregistrations: [Duration] = []
        for _ in 0..<Reliability.count(quick: 1, full: 5) {
            try await Task.sleep(for: .milliseconds(300))
            let (owner, pid) = try await daemon()
            killedOwner.withLock { $0 = owner }
            appeared.withLock { $0 = nil }
            added.withLock { $0 = nil }
            kill(pid, SIGKILL)
            // Gone from the bus (with activation, another may own the name already).
            let gone = await Reliability.waitUntil(.seconds(60)) {
                do { return try await watcher.connection.nameOwner(of: ShmBusProtocol.registryName) != owner } catch { return false }
            }
            try #require(gone != nil, "the killed registry still owns its name")
            if let process = handStarted { _ = await process.exit() }
            // Down for a while: the publisher keeps publishing and collecting.
            try await Task.sleep(for: .milliseconds(300))
            try await startDaemon()
            let registered = try await Reliability.waitUntil(.seconds(60)) {
                let channel = try await watcher.channels().first { $0.name == "outlives" }
                return channel?.owner == publisher.connection.uniqueName && added.withLock { $0 } != nil
            }
            try #require(registered != nil, "the publisher did not register again within 60 s")
            let elapsed = try #require(added.withLock { $0 }) - (try #require(appeared.withLock { $0 }))
            Reliability.expectLatency(elapsed, within: .seconds(2), "registered again after the registry appeared")
            reregistrations.append(elapsed)
        }

        try await Task.sleep(for: .milliseconds(300))
        loop.cancel()
        _ = await loop.result
        await publisher.flush()
        let last = publisher.lastSequence
        let caughtUp = await Reliability.waitUntil(.seconds(60)) { audit.withLock { $0.last } >= last }
        subscriber.cancel()
        let ended = await reading.result
        let seen = audit.withLock { $0 }
        #expect(caughtUp != nil, "the subscriber reached \(seen.last) of \(last); its iteration ended with \(ended)")
        #expect(seen.problems.isEmpty, "\(seen.problems.prefix(5))")
        #expect(UInt64(seen.delivered) + seen.missed == seen.last - (seen.first ?? 1) + 1)
        await publisher.close()
        Reliability.report(
            "daemon-sigkill-\(restart.rawValue)",
            [
                "restarts": reregistrations.count,
                "reregistered_after": reregistrations.map(Reliability.milliseconds),
                "published": last, "delivered": seen.delivered, "missed": seen.missed, "gaps": seen.gaps.count,
            ])
    }
}
