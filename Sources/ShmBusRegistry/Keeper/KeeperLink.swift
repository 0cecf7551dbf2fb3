import DBus
import Foundation
import Locking
import Logging
import ShmBusProtocol
import ShmBusSystem

/// The registry's side of the keeper (``KeeperService``): hands it every persistent
/// segment as it is registered, tells it of departures and removals, and at start-up
/// takes back what a previous registry left with it.
///
/// Calls go out one at a time, in the order the registry made them, from one task:
/// a `Drop` must never overtake the `Keep` it undoes. `keep` waits for the keeper's
/// answer, so a persistent segment's registration is answered only once the keeper
/// holds it; departures and drops do not hold up the registry.
///
/// When the keeper is missing (never started, exited while idle, killed), the link
/// starts one (D-Bus activation, else the configured command) and hands it everything
/// the registry holds that is persistent, from the registry's state at that moment.
final class KeeperLink: Sendable {
    /// Every persistent segment the registry holds now, for a new keeper.
    typealias Snapshot = @Sendable () async -> [KeptSegment]

    private let connection: DBusConnection
    private let command: [String]?
    private let logger: Logger
    private let jobs: AsyncStream<KeeperJob>.Continuation
    private let task: Task<Void, Never>

    init(connection: DBusConnection, command: [String]?, logger: Logger, snapshot: @escaping Snapshot) {
        self.connection = connection
        self.command = command
        self.logger = logger
        let (stream, jobs) = AsyncStream.makeStream(of: KeeperJob.self)
        self.jobs = jobs
        let worker = Worker(connection: connection, command: command, logger: logger, snapshot: snapshot)
        task = Task {
            for await job in stream { await worker.perform(job) }
        }
    }

    deinit {
        stop()
    }

    func stop() {
        jobs.finish()
        task.cancel()
    }

    /// Hands `segment` to the keeper; returns when it holds it or cannot.
    func keep(_ segment: KeptSegment) async {
        await withCheckedContinuation { continuation in
            if case .terminated = jobs.yield(.keep(segment, continuation)) { continuation.resume() }
        }
    }

    func ownerLeft(_ segment: String, expires: UInt64) { jobs.yield(.ownerLeft(segment, expires: expires)) }

    func drop(_ segment: String) { jobs.yield(.drop(segment)) }

    /// Returns when every call queued before it has been made (or given up).
    func settle() async {
        await withCheckedContinuation { continuation in
            if case .terminated = jobs.yield(.settle(continuation)) { continuation.resume() }
        }
    }

    /// The keeper's name changed hands: a keeper that went away is replaced, and one
    /// that appeared while this had none is given everything.
    func keeperChanged() { jobs.yield(.resync) }

    // MARK: Taking back

    /// What a running keeper holds, in batches, or nothing when no keeper of this
    /// process's Unix user is on the bus. A keeper is not started for this: a bus
    /// without one has nothing to give back.
    ///
    /// At most ``KeptSegments/limit`` segments, each batch in name order after the one
    /// before: a keeper that repeats itself, or never says it is done, would otherwise
    /// keep the registry from starting (and fill it with descriptors).
    static func takeBack(on connection: DBusConnection, logger: Logger) async -> [KeptSegment] {
        guard let owner = try? await connection.nameOwner(of: ShmBusProtocol.keeperName) else { return [] }
        guard await trusts(owner, on: connection, logger: logger) else { return [] }
        let keeper = Keeper1.Proxy(connection: connection, destination: owner, path: ShmBusProtocol.keeperPath)
        var out: [KeptSegment] = []
        var after = ""
        while out.count < KeptSegments.limit {
            let batch: [KeptSegment]
            do {
                batch = try await keeper.hand(after: after)
            } catch {
                logger.error("the keeper did not hand back its segments", metadata: ["keeper": "\(owner)", "error": "\(error)"])
                return out
            }
            guard !batch.isEmpty else { return out }
            var previous = after
            for entry in batch.prefix(ShmBusProtocol.keeperBatch) {
                guard let name = entry.record.segment, name > previous else {
                    logger.error(
                        "the keeper handed back segments out of order; taking no more",
                        metadata: ["keeper": "\(owner)", "after": "\(previous)", "segment": "\(entry.record.segment ?? "")"])
                    return out
                }
                out.append(entry)
                previous = name
            }
            after = previous
        }
        logger.error("the keeper holds more segments than a registry takes back", metadata: ["keeper": "\(owner)", "taken": "\(out.count)"])
        return out
    }

    /// A keeper is trusted with segments, and its records believed, only if it runs as
    /// this process's Unix user (the bus says so, not the keeper).
    static func trusts(_ owner: String, on connection: DBusConnection, logger: Logger) async -> Bool {
        let uid = try? await connection.unixUser(of: owner)
        guard uid == getuid() else {
            logger.error(
                "ignoring a keeper of another Unix user",
                metadata: ["keeper": "\(owner)", "its-user": "\(uid.map(String.init) ?? "unknown")", "ours": "\(getuid())"])
            return false
        }
        return true
    }
}

private enum KeeperJob: Sendable {
    case keep(KeptSegment, CheckedContinuation<Void, Never>)
    case ownerLeft(String, expires: UInt64)
    case drop(String)
    /// Nothing to send: resumed once the calls before it are made.
    case settle(CheckedContinuation<Void, Never>)
    /// The keeper's name changed hands: a new keeper is given everything.
    case resync
}

/// The link's state, touched only by its one task.
private actor Worker {
    let connection: DBusConnection
    let command: [String]?
    let logger: Logger
    let snapshot: KeeperLink.Snapshot
    /// The keeper's unique name once it has been found and checked.
    var keeper: String?
    /// Set when no keeper could be had, so that the warning is logged once; a keeper
    /// appearing on the bus later is given everything.
    var warned = false
    /// Until when calls do not look for a keeper again after none could be had. Looking
    /// means asking the bus, maybe starting a process and waiting up to 10 s for it, on
    /// the one queue every persistent registration waits on; a keeper that appears
    /// meanwhile is given everything anyway (``KeeperLink/keeperChanged()``).
    var retryAt = ContinuousClock.now
    static let retryInterval = Duration.seconds(30)

    init(connection: DBusConnection, command: [String]?, logger: Logger, snapshot: @escaping KeeperLink.Snapshot) {
        self.connection = connection
        self.command = command
        self.logger = logger
        self.snapshot = snapshot
    }

    func perform(_ job: KeeperJob) async {
        switch job {
        case .keep(let segment, let done):
            await send { try await $0.keep(fd: segment.fd, record: segment.record) }
            done.resume()
        case .ownerLeft(let name, let expires):
            await send { try await $0.ownerLeft(segment: name, expires: expires) }
        case .drop(let name):
            await send { try await $0.drop(segment: name) }
        case .settle(let done):
            done.resume()
        case .resync:
            let owner = (try? await connection.nameOwner(of: ShmBusProtocol.keeperName)) ?? nil
            // The keeper this link started or found itself: it has everything already.
            if let owner, owner == keeper { return }
            keeper = nil
            let all = await snapshot()
            guard !all.isEmpty, let found = await findOrStart() else { return }
            await give(all, to: found)
        }
    }

    /// Sends one call to the keeper. When there is none, or it did not answer, a keeper
    /// is found or started and given the registry's whole persistent state, and then the
    /// call: a keeper found on the bus may hold segments this registry has since
    /// removed, and a snapshot has no word for what is gone.
    private func send(_ call: @Sendable (Keeper1.Proxy) async throws -> Void) async {
        if let keeper {
            do {
                try await call(proxy(keeper))
                return
            } catch {
                guard !Self.refused(error) else {
                    // It answered, and said no (full, or a record it does not take):
                    // giving it everything again would change nothing but cost a whole
                    // snapshot for every call from now on.
                    logger.warning("the keeper refused a call", metadata: ["keeper": "\(keeper)", "error": "\(error)"])
                    return
                }
                logger.info("the keeper did not answer; finding another", metadata: ["keeper": "\(keeper)", "error": "\(error)"])
                self.keeper = nil
            }
        }
        guard ContinuousClock.now >= retryAt, let found = await findOrStart() else { return }
        guard await give(await snapshot(), to: found) else { return }
        do {
            try await call(proxy(found))
        } catch {
            logger.warning("the keeper refused a call", metadata: ["keeper": "\(found)", "error": "\(error)"])
        }
    }

    /// Whether `error` is the keeper's own answer (`org.shmbus.Error.*`), as opposed to
    /// a keeper that is gone, exiting or not answering.
    private static func refused(_ error: any Error) -> Bool {
        (error as? DBusError)?.name.hasPrefix("org.shmbus.Error.") == true
    }

    /// Keeps every segment of `segments` with `owner`; false when it stopped answering.
    @discardableResult
    private func give(_ segments: [KeptSegment], to owner: String) async -> Bool {
        let keeper = proxy(owner)
        for segment in segments {
            do {
                try await keeper.keep(fd: segment.fd, record: segment.record)
            } catch {
                logger.error("the keeper refused a segment", metadata: ["segment": "\(segment.record.segment ?? "")", "error": "\(error)"])
                if !Self.refused(error) { return false }
            }
        }
        self.keeper = owner
        warned = false
        logger.info("keeper holds the persistent segments", metadata: ["keeper": "\(owner)", "segments": "\(segments.count)"])
        return true
    }

    private func proxy(_ owner: String) -> Keeper1.Proxy {
        Keeper1.Proxy(connection: connection, destination: owner, path: ShmBusProtocol.keeperPath)
    }

    /// The keeper on the bus, else one started by D-Bus activation, else by the
    /// configured command; nil (logged once) when there is none to be had.
    private func findOrStart() async -> String? {
        if let owner = try? await connection.nameOwner(of: ShmBusProtocol.keeperName) {
            return await checked(owner)
        }
        let exited = Lock(false)
        do {
            _ = try await connection.call(
                destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                method: "StartServiceByName", [.string(ShmBusProtocol.keeperName), .uint32(0)], timeout: .seconds(30))
        } catch {
            guard let command, let executable = command.first else { return unavailable("\(error)") }
            do {
                let process = try ChildProcess(executable, Array(command.dropFirst()), stdin: .null, stdout: .null, stderr: .inherit)
                // Reaped when it exits, so that no zombie stays behind while this runs;
                // a keeper that exits at once (it may not own the name) ends the wait.
                Task.detached {
                    _ = await process.exit()
                    exited.withLock { $0 = true }
                }
            } catch {
                return unavailable("cannot start \(command.joined(separator: " ")): \(error)")
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let gone = exited.withLock { $0 }
            if let owner = try? await connection.nameOwner(of: ShmBusProtocol.keeperName) {
                return await checked(owner)
            }
            if gone { return unavailable("the keeper exited without taking \(ShmBusProtocol.keeperName)") }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return unavailable("the keeper started but did not take \(ShmBusProtocol.keeperName) within 10 s")
    }

    /// `owner` if it is a keeper this registry trusts.
    private func checked(_ owner: String) async -> String? {
        guard await KeeperLink.trusts(owner, on: connection, logger: logger) else {
            return unavailable("the keeper's name is owned by a connection of another Unix user")
        }
        return owner
    }

    private func unavailable(_ reason: String) -> String? {
        retryAt = .now + Self.retryInterval
        if !warned {
            logger.warning(
                "no keeper: persistent segments will not survive a restart of the registry",
                metadata: ["reason": "\(reason)"])
            warned = true
        }
        return nil
    }
}
