import DBus
import Foundation
import Logging
import SharedSegments
import ShmBusPolicy
import Locking
import Synchronization
import SystemPackage

/// The single writer of a channel: publishes chunks into sealed shared memory and
/// announces them on the bus.
///
/// ```swift
/// let publisher = try await Publisher.open(channel: "camera/0")
/// try publisher.publish(frameBytes, key: "latest")
/// // or, zero-copy: write straight into shared memory
/// try publisher.publish(key: "latest", length: frameSize) { buffer in render(into: buffer) }
/// ```
///
/// Publishing is synchronous and never waits for the bus: the chunk is committed to the
/// segment (readers can see it at once), and a `Committed` signal is emitted or
/// coalesced. Garbage collection happens inside `publish` when the segment is full or
/// mostly dead; the new generation is registered with the registry in the background
/// and the old one retired right after, in order. If the registry restarts, the
/// publisher registers its current segment again by itself.
///
/// A publisher owns its own bus connection; it is `Sendable` and may publish from any
/// thread (calls are serialized).
public final class Publisher: Sendable {
    public let channel: String
    public let connection: DBusConnection
    let registry: RegistryClient
    let options: Options
    let writer: Lock<ChannelWriter>
    /// A ring the doorbell held back is scheduled (see `ringHeldBackLater()`).
    let heldBackRingScheduled = Atomic(false)
    let notifier: CommitNotifier
    let registrar: Registrar
    let leases: PublisherLeases
    /// The task that follows the registry's name (Publisher+Bus.swift).
    let follower = Lock<Task<Void, Never>?>(nil)
    let export = Lock<DBusExport?>(nil)
    /// When the last collection made a new generation (see `Options.linger`).
    let lastCollection = Lock<ContinuousClock.Instant?>(nil)
    let logger: Logger
    let metrics: PublisherMetrics

    private init(
        channel: String, connection: DBusConnection, registry: RegistryClient, options: Options, writer: sending ChannelWriter,
        logger: Logger
    ) {
        self.channel = channel
        self.connection = connection
        self.registry = registry
        self.options = options
        let doorbell = writer.doorbell
        let writer = Lock(writer)
        self.writer = writer
        self.logger = logger
        metrics = PublisherMetrics(channel: channel)
        leases = PublisherLeases(writer: writer, connection: connection, logger: logger)
        let notifier = CommitNotifier(
            connection: connection, channel: channel, minimumInterval: options.minimumSignalInterval, doorbell: doorbell)
        self.notifier = notifier
        registrar = Registrar(
            settings: .init(
                channel: channel, persistent: options.persistent, ttl: options.ttl, readers: options.readers, me: connection.uniqueName),
            registry: registry, writer: writer, logger: logger, announce: { notifier.committed($0) })
    }

    /// Opens `channel` on `bus`: a new connection, a first segment registered with the
    /// registry (which makes this connection the channel's owner), and the
    /// `/org/shmbus/Publisher1` object.
    ///
    /// - Throws: ``ShmBusError`` (`AccessDenied` when another connection owns the
    ///   channel, `RegistryUnavailable`, …).
    public static func open(
        channel: String, on bus: DBusConnection.Bus = .session, options: Options = Options(),
        logger: Logger = Logger(label: "org.shmbus.publisher")
    ) async throws(ShmBusError) -> Publisher {
        if let problem = ChannelName.problem(with: channel) {
            throw .invalidArgument("invalid channel name '\(channel)': \(problem)")
        }
        if options.reuseMemory, options.persistent {
            throw .invalidArgument("reuseMemory and persistent do not go together: no lease outlives the publisher")
        }
        let connection = try await ShmBusError.rethrowing { try await DBusConnection.connect(to: bus, logger: logger) }
        let registry = RegistryClient(connection: connection)
        let publisher: Publisher
        do throws(ShmBusError) {
            // A channel whose publisher left is continued, not started again: the same
            // history, generations and sequences (Publisher+Lineage.swift).
            let history = try await History.find(channel: channel, registry: registry, excludingKeys: options.replacingKeys)
            var options = options
            if history?.persistent == true, !options.persistent {
                if options.reuseMemory {
                    throw ShmBusError.invalidArgument(
                        "channel '\(channel)' holds persistent chunks, which cannot live in reused memory; open it without reuseMemory")
                }
                // The history's persistent chunks are carried over into this
                // publisher's segments: they stay persistent, as the channel's data.
                options.persistent = true
                options.ttl = options.ttl ?? history?.ttl
            }
            let writer: ChannelWriter
            do throws(SegmentError) {
                if let lineage = history?.lineage {
                    writer = try ChannelWriter(
                        channel: channel, capacity: options.capacity, policy: options.garbageCollection, continuing: lineage,
                        hugePages: options.hugePages, reusesMemory: options.reuseMemory)
                } else {
                    writer = try ChannelWriter(
                        channel: channel, capacity: options.capacity, policy: options.garbageCollection, hugePages: options.hugePages,
                        reusesMemory: options.reuseMemory)
                }
            } catch {
                throw ShmBusError(error, context: "channel '\(channel)'")
            }
            if options.prefaultBytes > 0 { writer.prefault = PrefaultPlan(bytesAhead: options.prefaultBytes) }
            publisher = Publisher(
                channel: channel, connection: connection, registry: registry, options: options, writer: writer, logger: logger)
            try await publisher.exportObject()
            try await publisher.registrar.registerFirst(replacing: history?.current)
            publisher.registrar.start()
            try await publisher.startFollowingRegistry()
        } catch {
            connection.close()
            throw error
        }
        return publisher
    }

    deinit {
        registrar.stop()
        leases.close()
        follower.withLock { $0?.cancel() }
        connection.close()
    }

    // MARK: Publishing

    /// Publishes a copy of `bytes` as one chunk.
    ///
    /// - Parameters:
    ///   - bytes: the payload, copied into the segment.
    ///   - key: publishing a key again makes the previous chunk with that key obsolete.
    ///   - expiresIn: readers skip the chunk after this long.
    ///   - attributes: what the chunk holds (a content type, an array's or an image's
    ///     layout), stored with it; refused with `invalidArgument` if they break
    ///     docs/FORMAT.md's rules, such as an array that does not fit `bytes`.
    @discardableResult
    public func publish(
        _ bytes: some ContiguousBytes, key: String = "", expiresIn: Duration? = nil, attributes: ChunkAttributes = ChunkAttributes()
    ) throws(ShmBusError) -> PublishedChunk {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(PublishError<Never>) in
                try publishInPlace(key: key, length: buffer.count, expiresIn: expiresIn, attributes: attributes) {
                    (target: UnsafeMutableRawBufferPointer) in
                    if buffer.count > 0 { target.copyMemory(from: buffer) }
                }
            }
        }
        do {
            return try result.get()
        } catch {
            throw error.shmBusError
        }
    }

    /// Publishes a chunk of `length` bytes written in place: `fill` gets the chunk's
    /// memory in the shared segment (zero-copy). If `fill` throws, nothing is
    /// published and its error is rethrown as it is; every other failure is a
    /// ``ShmBusError``. `attributes` as for ``publish(_:key:expiresIn:attributes:)``.
    @discardableResult
    public func publish(
        key: String = "", length: Int, expiresIn: Duration? = nil, attributes: ChunkAttributes = ChunkAttributes(),
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> PublishedChunk {
        do {
            return try publishInPlace(key: key, length: length, expiresIn: expiresIn, attributes: attributes, fill)
        } catch {
            switch error {
            case .fill(let error): throw error
            case .shmBus(let error): throw error
            }
        }
    }

    /// The publish path, with the two kinds of failure apart. `origin`: a chunk copied
    /// from another host keeps its sequence, timestamp and (absolute) expiry there
    /// (Publisher+Import.swift).
    func publishInPlace<E: Error>(
        key: String, length: Int, expiresIn: Duration?, attributes: ChunkAttributes,
        origin: (sequence: UInt64, timestamp: UInt64, expiry: UInt64)? = nil,
        _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Void
    ) throws(PublishError<E>) -> PublishedChunk {
        guard length >= 0 else { throw .shmBus(.invalidArgument("a chunk's length cannot be negative (\(length))")) }
        let expiry = origin?.expiry ?? expiresIn.map(RealtimeClock.after) ?? 0
        // Thrown out of the lock and returned as a struct, not as a `Result` of a
        // tuple: that was copied and destroyed through the runtime's generic tuple
        // witnesses, 15% of a small publish (docs/BENCHMARKS.md, "64-byte chunks").
        let outcome = try writer.withLock { writer throws(PublishError<E>) -> CommitOutcome in
            let reservation: ChannelWriter.Reservation
            do throws(SegmentError) {
                reservation = try writer.reserve(
                    length: UInt64(length), key: key, expiresAt: expiry, attributes: attributes,
                    origin: origin.map { ($0.sequence, $0.timestamp) })
            } catch {
                throw .shmBus(ShmBusError(error, context: "channel '\(channel)'"))
            }
            // Queued while the writer is still locked, so that no commit into the new
            // generation can see no rotation pending and announce it before it is
            // registered; and before anything below can fail and lose it.
            if let rotation = reservation.rotation { queue(rotation, of: writer) }
            do throws(E) {
                try fill(reservation.buffer)
            } catch {
                writer.abandon(reservation)
                throw .fill(error)
            }
            let appended: ChannelWriter.Appended
            do throws(SegmentError) {
                appended = try writer.commit(reservation)
            } catch {
                throw .shmBus(ShmBusError(error, context: "channel '\(channel)'"))
            }
            let chunk = PublishedChunk(
                segment: appended.segmentName, generation: appended.generation, offset: appended.payloadOffset,
                length: appended.length, sequence: appended.sequence)
            return CommitOutcome(chunk: chunk, record: appended.recordOffset..<appended.recordEnd, ringOwed: writer.ringOwed)
        }
        let (chunk, record) = (outcome.chunk, outcome.record)
        metrics.chunks.increment()
        metrics.bytes.increment(by: length)
        if outcome.ringOwed { ringHeldBackLater() }
        // A new generation is announced once it is registered (see the registrar).
        if !registrar.isRotationPending {
            notifier.committed(
                segment: chunk.segment, generation: chunk.generation, startOffset: record.lowerBound, endOffset: record.upperBound,
                firstSequence: chunk.sequence, lastSequence: chunk.sequence)
        }
        return chunk
    }

    /// What a publish committed, handed out of the writer's lock.
    struct CommitOutcome: Sendable {
        let chunk: PublishedChunk
        let record: Range<UInt64>
        let ringOwed: Bool
    }

    /// The segment chunks are published into now.
    public var currentSegment: String { writer.withLock { $0.current.id.name } }
    /// The last sequence published.
    public var lastSequence: UInt64 { writer.withLock { $0.lastSequence } }
    /// `Committed` signals emitted so far.
    public var signalsSent: UInt64 { notifier.signalsSent }

    /// Waits until every generation created so far is registered and announced.
    public func flush() async {
        await registrar.flush()
        notifier.flush()
    }

    /// Stops publishing: flushes, waits out ``Options/linger`` if a collection happened
    /// within it, then closes the connection. Non-persistent segments leave the
    /// registry as the connection leaves the bus; persistent ones stay.
    public func close() async {
        await flush()
        if !options.persistent, let collected = lastCollection.withLock({ $0 }) {
            let rest = options.linger - (ContinuousClock.now - collected)
            if rest > .zero { try? await Task.sleep(for: rest) }
        }
        registrar.stop()
        leases.close()
        follower.withLock { $0?.cancel() }
        export.withLock { $0?.cancel() }
        connection.close()
    }
}
