import DBus
import Locking
import Logging
import SharedSegments

/// The lease pages subscribers handed this publisher (`Publisher1.Lease`), one per
/// connection, each kept on the writer until its connection leaves the bus
/// (docs/FORMAT.md, "Reused memory").
final class PublisherLeases: Sendable {
    private let writer: Lock<ChannelWriter>
    private let connection: DBusConnection
    private let logger: Logger
    private let state = Lock(State())

    private struct State {
        /// The writer's lease ID for each connection, and the task that waits for that
        /// connection to leave.
        var byConnection: [String: (lease: UInt64, watch: Task<Void, Never>?)] = [:]
        var closed = false
    }

    init(writer: Lock<ChannelWriter>, connection: DBusConnection, logger: Logger) {
        self.writer = writer
        self.connection = connection
        self.logger = logger
    }

    /// Registers `page` for `sender`, replacing its earlier page (the new one is on the
    /// writer before the old one goes, so the sender's holds never lapse). Returns once
    /// the writer has it; watching for the sender's departure goes on in a task of its
    /// own (its bus calls are not the caller's to wait for: under load they took longer
    /// than a subscriber waits for the reply).
    func add(_ page: UnixFileDescriptor, for sender: String) throws(ShmBusError) {
        let id: UInt64
        do throws(SegmentError) {
            id = try writer.withLock { (writer) throws(SegmentError) -> UInt64 in try writer.addLease(page) }
        } catch {
            if error.kind == .capacityExceeded { throw .quotaExceeded("lease: \(error.message)") }
            throw ShmBusError(error, context: "lease")
        }
        let (replaced, watched) = state.withLock { state -> (UInt64?, Bool) in
            let earlier = state.byConnection[sender]
            state.byConnection[sender] = (id, earlier?.watch)
            return (earlier?.lease, earlier?.watch != nil)
        }
        if let replaced { writer.withLock { $0.removeLease(replaced) } }
        if !watched { Task { await self.watch(sender) } }
    }

    /// Forgets `sender`'s lease once it leaves the bus (or now, if it has left already).
    private func watch(_ sender: String) async {
        let changes: AsyncThrowingCompactMapSequence<DBusSignalStream, DBusConnection.NameOwnerChange>
        let present: String?
        do {
            changes = try await connection.nameOwnerChanges(for: sender)
            // It may have left before the match rule: ask once.
            present = try await connection.nameOwner(of: sender)
        } catch {
            // The connection is closing; nothing reuses memory after that.
            return
        }
        guard present != nil else {
            remove(sender)
            return
        }
        let task = Task { [weak self] in
            do {
                var departures = changes.filter { $0.newOwner == nil }.makeAsyncIterator()
                guard try await departures.next() != nil else { return }
            } catch {
                return
            }
            self?.remove(sender)
        }
        let keep = state.withLock { state -> Bool in
            guard !state.closed, state.byConnection[sender] != nil else { return false }
            state.byConnection[sender]?.watch = task
            return true
        }
        if !keep { task.cancel() }
    }

    private func remove(_ sender: String) {
        guard let lease = state.withLock({ $0.byConnection.removeValue(forKey: sender)?.lease }) else { return }
        writer.withLock { $0.removeLease(lease) }
        logger.debug("lease dropped: its connection left", metadata: ["connection": "\(sender)"])
    }

    /// Stops watching (the publisher closes).
    func close() {
        let watches = state.withLock { state -> [Task<Void, Never>] in
            state.closed = true
            return state.byConnection.values.compactMap(\.watch)
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
