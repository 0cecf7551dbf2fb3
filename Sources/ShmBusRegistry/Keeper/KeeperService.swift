import DBus
import Foundation
import Locking
import Logging
import SharedSegments
import ShmBusProtocol

/// The keeper of persistent segments (`org.shmbus.Keeper1`, `shmbus keeper`): holds the
/// descriptors of every persistent segment the registry has, so that they outlive the
/// registry process. A registry that starts takes them back (``KeeperLink``) before it
/// takes its own name.
///
/// It is a process of its own because that is what survives a registry that is
/// SIGKILLed, crashes or is upgraded, with or without a service manager; under systemd
/// it is its own unit, not the registry's (docs/PROTOCOL.md, "Persistence across
/// registry restarts", says why systemd's file-descriptor store is not used instead).
///
/// The keeper never maps or reads a segment: it holds read-only descriptors and the
/// registry's records. It serves only connections of its own Unix user, and exits
/// when its bus goes away or after it has held nothing for `idleExit`.
public final class KeeperService: Sendable {
    public let connection: DBusConnection
    private let kept: KeptSegments
    private let export: DBusExport
    private let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    private let background: Lock<[Task<Void, Never>]>

    private init(connection: DBusConnection, kept: KeptSegments, export: DBusExport) {
        self.connection = connection
        self.kept = kept
        self.export = export
        background = Lock([])
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    /// Exports the keeper on `connection` and takes `org.shmbus.Keeper1`.
    ///
    /// - Throws: ``ShmBusError`` (`ChannelBusy`) when another keeper owns the name.
    public static func start(
        on connection: DBusConnection, idleExit: Duration = .seconds(30),
        logger: Logger = Logger(label: "org.shmbus.keeper")
    ) async throws -> KeeperService {
        let descriptors = DescriptorLimit.raise()
        let kept = KeptSegments(logger: logger, capacity: DescriptorLimit.segments(under: descriptors))
        if kept.capacity < KeptSegments.limit {
            logger.notice(
                "the open-file limit bounds how many segments this keeper holds",
                metadata: ["open-files": "\(descriptors)", "segments": "\(kept.capacity)"])
        }
        // Every departure from the bus, for the owners of what it keeps (see
        // ``KeptSegments/departed(_:at:)``). Subscribed before anything is served, so no
        // departure after the first Keep is missed.
        let departures = try await connection.nameOwnerChanges()
        let object = KeeperObject(kept: kept, connection: connection, user: getuid())
        let export = try await connection.export([Keeper1.interface(implementedBy: object)], at: ShmBusProtocol.keeperPath)
        let service = KeeperService(connection: connection, kept: kept, export: export)
        let reply = try await connection.requestName(ShmBusProtocol.keeperName, flags: [.doNotQueue])
        guard reply == .primaryOwner || reply == .alreadyOwner else {
            service.stop()
            throw ShmBusError(.channelBusy, "another keeper already owns \(ShmBusProtocol.keeperName)")
        }
        let names = try await connection.nameOwnerChanges(for: ShmBusProtocol.keeperName)
        service.spawn {
            do {
                for try await change in departures where change.newOwner == nil && change.name.hasPrefix(":") {
                    await kept.departed(change.name, at: UInt64(Date().timeIntervalSince1970 * 1_000_000))
                }
            } catch {}
        }
        service.spawn {
            // The stream ends with the connection (the bus went away), which ends the
            // keeper: what it held belonged to registries on that bus.
            do {
                for try await _ in names {}
            } catch {
                logger.info("stopped following the bus", metadata: ["reason": "\(error)"])
            }
            service.finish.finish()
        }
        service.spawn {
            while !Task.isCancelled {
                try? await Task.sleep(for: min(idleExit, .seconds(1)))
                guard await kept.idle(for: idleExit) else { continue }
                // Release the name first, then refuse what still comes in, so that a
                // registry's Keep that raced with this either lands before (and the
                // keeper is not idle any more) or fails and starts a new keeper.
                _ = try? await connection.releaseName(ShmBusProtocol.keeperName)
                if await kept.close() {
                    logger.info("nothing kept; exiting")
                    service.stop()
                    return
                }
                // Something came in meanwhile. Another keeper may have taken the name
                // since (the registry starts one when the name goes): then this one is
                // exited, since nobody would ever take back or drop what it holds, and the
                // registry gives the new one everything it has, this included.
                let reply = try? await connection.requestName(ShmBusProtocol.keeperName, flags: [.doNotQueue])
                guard reply == .primaryOwner || reply == .alreadyOwner else {
                    logger.warning("another keeper took the name while this one was exiting; exiting")
                    service.stop()
                    return
                }
            }
        }
        logger.info("keeper started", metadata: ["unique-name": "\(connection.uniqueName)", "bus": "\(connection.bus)"])
        return service
    }

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        background.withLock { $0.append(task) }
    }

    /// Waits until ``stop()`` is called, the keeper has been idle long enough, or the
    /// bus connection ends.
    public func run() async {
        for await _ in finished {}
    }

    /// Stops serving and lets go of every descriptor (the registry's copies, if it runs,
    /// are unaffected).
    public func stop() {
        for task in background.withLock({ $0 }) { task.cancel() }
        export.cancel()
        connection.close()
        finish.finish()
    }
}

/// `/org/shmbus/Keeper1`: checks the caller, then hands the call to ``KeptSegments``.
struct KeeperObject: Keeper1.Implementation {
    let kept: KeptSegments
    let connection: DBusConnection
    /// The keeper's own Unix user: the only one it serves.
    let user: uid_t

    func invalidArguments(_ error: DBusError) -> any Error {
        ShmBusError.invalidArgument(error.message)
    }

    func keep(fd: UnixFileDescriptor, record: Keeper1.Record, call: DBusMethodCall) async throws {
        try await checkCaller(call)
        // Held only as a registry would write it: whatever is kept is handed to the next
        // registry, so a record or descriptor no registry would send is refused here,
        // not at every start-up after.
        let segment = KeptSegment(fd: fd, record: record)
        if let problem = record.problem ?? segment.descriptorProblem { throw ShmBusError.invalidArgument(problem) }
        try await kept.keep(segment, name: record.segment ?? "", channel: record.channel ?? "")
    }

    func ownerLeft(segment: String, expires: UInt64, call: DBusMethodCall) async throws {
        try await checkCaller(call)
        try await kept.ownerLeft(segment, expires: expires)
    }

    func drop(segment: String, call: DBusMethodCall) async throws {
        try await checkCaller(call)
        await kept.drop(segment)
    }

    func hand(after: String, call: DBusMethodCall) async throws -> [KeptSegment] {
        try await checkCaller(call)
        return await kept.hand(after: after, count: ShmBusProtocol.keeperBatch)
    }

    var segmentCount: UInt32 { get async { UInt32(clamping: await kept.count) } }

    /// Only connections of the keeper's own Unix user (the registry runs as that user)
    /// may hand it segments or take them: the user comes from the bus, not the caller.
    private func checkCaller(_ call: DBusMethodCall) async throws {
        let uid: UInt32
        do {
            uid = try await connection.unixUser(of: call.sender)
        } catch {
            throw ShmBusError.accessDenied("the bus cannot tell the Unix user of \(call.sender): \(error)")
        }
        guard uid == user else {
            throw ShmBusError.accessDenied("the keeper serves only Unix user \(user) (the registry's); \(call.sender) is user \(uid)")
        }
    }
}
