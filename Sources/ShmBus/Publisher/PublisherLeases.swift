import DBus
import Locking
import Logging
import SharedSegments

/// The lease pages subscribers handed this publisher (`Publisher1.Lease`), kept on the
/// writer until the connection that sent them leaves the bus (docs/FORMAT.md, "Reused
/// memory"). A connection may send several: each subscriber on it has a page of its
/// own, and so does each `Subscriber.latest` chunk.
final class PublisherLeases: Sendable {
    private let writer: Lock<ChannelWriter>
    private let connection: DBusConnection
    private let logger: Logger
    private let state = Lock(State())

    private struct State {
        /// The writer's lease IDs of each connection, and whether its departure is
        /// watched.
        var byConnection: [String: (leases: [UInt64], watched: Bool)] = [:]
        var watches: [Task<Void, Never>] = []
        var closed = false
    }

    init(writer: Lock<ChannelWriter>, connection: DBusConnection, logger: Logger) {
        self.writer = writer
        self.connection = connection
        self.logger = logger
    }

    /// Registers `page` for `sender`, beside any it sent before. Returns once the
    /// writer has it; watching for the sender's departure goes on in a task of its
    /// own (its bus calls are not the caller's to wait for: under load they took
    /// longer than a subscriber waits for the reply).
    func add(_ page: UnixFileDescriptor, for sender: String) throws(ShmBusError) {
        let id: UInt64
        do throws(SegmentError) {
            id = try writer.withLock { (writer) throws(SegmentError) -> UInt64 in try writer.addLease(page) }
        } catch {
            if error.kind == .capacityExceeded { throw .quotaExceeded("lease: \(error.message)") }
            throw ShmBusError(error, context: "lease")
        }
        let watch = state.withLock { state -> Bool in
            var entry = state.byConnection[sender] ?? ([], false)
            entry.leases.append(id)
            defer { entry.watched = true; state.byConnection[sender] = entry }
            return !entry.watched && !state.closed
        }
        if watch {
            let task = Task { await self.watchDeparture(of: sender) }
            state.withLock { $0.watches.append(task) }
        }
    }

    /// Forgets `sender`'s leases once it leaves the bus (or now, if it has left).
    private func watchDeparture(of sender: String) async {
        let changes: AsyncThrowingCompactMapSequence<DBusSignalStream, DBusConnection.NameOwnerChange>
        do {
            changes = try await connection.nameOwnerChanges(for: sender)
        } catch {
            // This connection is closing; nothing reuses memory after that.
            return
        }
        // It may have left before the match rule: ask once. No answer (a slow bus)
        // is not a departure; the signal still comes.
        if (try? await connection.nameOwner(of: sender)) == .some(nil) {
            remove(sender)
            return
        }
        do {
            var departures = changes.filter { $0.newOwner == nil }.makeAsyncIterator()
            guard try await departures.next() != nil else { return }
        } catch {
            return
        }
        remove(sender)
    }

    private func remove(_ sender: String) {
        guard let leases = state.withLock({ $0.byConnection.removeValue(forKey: sender)?.leases }) else { return }
        writer.withLock { writer in for lease in leases { writer.removeLease(lease) } }
        logger.debug("leases dropped: their connection left", metadata: ["connection": "\(sender)", "leases": "\(leases.count)"])
    }

    /// Stops watching (the publisher closes).
    func close() {
        let watches = state.withLock { state -> [Task<Void, Never>] in
            state.closed = true
            return state.watches
        }
        for watch in watches { watch.cancel() }
    }
}

extension Publisher {
    /// How memory reuse went (``Options/reuseMemory``; all zero without it).
    public struct MemoryReuse: Sendable, Hashable {
        /// Generations written into a retired segment's memory.
        public var reusedGenerations: UInt64
        /// Times a retired segment's memory was wanted but a subscriber's lease held it.
        public var heldBack: UInt64
        /// Subscribers' lease pages registered now.
        public var leases: Int
    }

    public var memoryReuse: MemoryReuse {
        writer.withLock { MemoryReuse(reusedGenerations: $0.reuseCounts.reused, heldBack: $0.reuseCounts.held, leases: $0.leaseCount) }
    }
}
