import DBus
import Foundation
import Logging
import SharedSegments
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
    public struct Options: Sendable {
        /// Bytes per segment, header included; the largest chunk is a bit smaller.
        public var capacity: UInt64 = 64 << 20
        public var garbageCollection: GarbageCollectionPolicy = .default
        /// Keep the segments after this process leaves the bus.
        public var persistent = false
        /// With `persistent`: how long the segments outlive the publisher.
        public var ttl: Duration?
        /// The minimum interval between two `Committed` signals; commits in between
        /// are announced together.
        public var minimumSignalInterval: Duration = .milliseconds(1)
        /// Ask for transparent huge pages for the segments (`madvise(MADV_HUGEPAGE)`).
        /// Where the system allows them for shared memory
        /// (`/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `advise`,
        /// `within_size` or `always`), subscribers map large chunks with a 512th of the
        /// page-table work; memory is then taken 2 MiB at a time. Elsewhere (Debian's
        /// default is `never`) it changes nothing.
        public var hugePages = true
        public init() {}
    }

    public let channel: String
    public let connection: DBusConnection
    let registry: RegistryClient
    let options: Options
    private let writer: Lock<ChannelWriter>
    let notifier: CommitNotifier
    private let registrar: AsyncStream<RegistrarJob>.Continuation
    private let segmentNames = Lock<SegmentState>(SegmentState())
    /// Rotations queued, not yet registered: while there are any, commits are not
    /// announced one by one (the registrar announces each generation whole once it is
    /// registered). Read on every publish, so an atomic.
    private let pendingRotations = Atomic<Int>(0)
    private let tasks = Lock<[Task<Void, Never>]>([])
    private let export = Lock<DBusExport?>(nil)
    let logger: Logger

    struct SegmentState {
        /// The segment of ours that the running registry has as the channel's current
        /// one; empty after the registry went away.
        var registered = ""
        /// Rotations queued and not yet registered *and announced*: `flush` waits
        /// until this is zero. Lowered, and the waiters drained, in one lock section.
        var unsettled = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private init(
        channel: String, connection: DBusConnection, registry: RegistryClient, options: Options, writer: sending ChannelWriter,
        registrar: AsyncStream<RegistrarJob>.Continuation, logger: Logger
    ) {
        self.channel = channel
        self.connection = connection
        self.registry = registry
        self.options = options
        self.writer = Lock(writer)
        self.registrar = registrar
        self.logger = logger
        notifier = CommitNotifier(connection: connection, channel: channel, minimumInterval: options.minimumSignalInterval)
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
    ) async throws -> Publisher {
        if let problem = ChannelName.problem(with: channel) {
            throw ShmBusError(.invalidArgument, "invalid channel name '\(channel)': \(problem)")
        }
        let connection: DBusConnection
        do {
            connection = try await DBusConnection.connect(to: bus, logger: logger)
        } catch {
            throw ShmBusError(.bus, error.message)
        }
        let registry = try RegistryClient(connection: connection)
        // Sequences continue where the channel's live segments end (a publisher that
        // takes over a channel whose persistent segments are still there).
        let firstSequence = try await Self.nextSequence(of: channel, registry: registry)
        let writer: ChannelWriter
        do throws(SegmentError) {
            writer = try ChannelWriter(
                channel: channel, capacity: options.capacity, policy: options.garbageCollection, firstSequence: firstSequence,
                hugePages: options.hugePages)
        } catch {
            throw ShmBusError(.invalidArgument, error.message)
        }
        let (stream, continuation) = AsyncStream.makeStream(of: RegistrarJob.self)
        let publisher = Publisher(
            channel: channel, connection: connection, registry: registry, options: options, writer: writer,
            registrar: continuation, logger: logger)
        do {
            try await publisher.exportObject()
            try await publisher.registerCurrent()
        } catch {
            connection.close()
            throw ShmBusError.wrapping(error)
        }
        publisher.startRegistrar(stream)
        try await publisher.startFollowingRegistry()
        return publisher
    }

    deinit {
        registrar.finish()
        for task in tasks.withLock({ $0 }) { task.cancel() }
        connection.close()
    }

    private static func nextSequence(of channel: String, registry: RegistryClient) async throws -> UInt64 {
        let segments = try await registry.segments(of: nil).filter { $0.channel == channel }
        var last: UInt64 = 0
        for segment in segments {
            if case .uint64(let sequence)? = try? await registry.segmentProperties(segment.name)["LastSequence"] {
                last = max(last, sequence)
            }
        }
        return last + 1
    }

    // MARK: Publishing

    /// Publishes a copy of `bytes` as one chunk.
    ///
    /// - Parameters:
    ///   - key: publishing a key again makes the previous chunk with that key obsolete.
    ///   - expiresIn: readers skip the chunk after this long.
    @discardableResult
    public func publish(_ bytes: some ContiguousBytes, key: String = "", expiresIn: Duration? = nil) throws -> PublishedChunk {
        try bytes.withUnsafeBytes { buffer in
            try publish(key: key, length: UInt64(buffer.count), expiresIn: expiresIn) { target in
                if buffer.count > 0 { target.copyMemory(from: buffer) }
            }
        }
    }

    /// Publishes a chunk of `length` bytes written in place: `fill` gets the chunk's
    /// memory in the shared segment (zero-copy). If `fill` throws, nothing is published.
    @discardableResult
    public func publish(
        key: String = "", length: UInt64, expiresIn: Duration? = nil, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> PublishedChunk {
        let expiry = expiresIn.map(RealtimeClock.after) ?? 0
        let (chunk, record) = try writer.withLock { writer throws -> (PublishedChunk, Range<UInt64>) in
            let reservation: ChannelWriter.Reservation
            do throws(SegmentError) {
                reservation = try writer.reserve(length: length, key: key, expiresAt: expiry)
            } catch {
                throw ShmBusError(.invalidArgument, error.message)
            }
            // Queued while the writer is still locked, so that no commit into the new
            // generation can see no rotation pending and announce it before it is
            // registered; and before anything below can fail and lose it.
            if let rotation = reservation.rotation { enqueue(try Registration(rotation)) }
            do {
                try fill(reservation.buffer)
            } catch {
                writer.abandon(reservation)
                throw error
            }
            let appended: ChannelWriter.Appended
            do throws(SegmentError) {
                appended = try writer.commit(reservation)
            } catch {
                throw ShmBusError(.invalidArgument, error.message)
            }
            let chunk = PublishedChunk(
                segment: appended.segmentName, generation: appended.generation, offset: appended.payloadOffset,
                length: appended.length, sequence: appended.sequence)
            return (chunk, appended.recordOffset..<appended.recordEnd)
        }
        // A new generation is announced once it is registered (see the registrar).
        if !isRotationPending {
            notifier.committed(
                segment: chunk.segment, generation: chunk.generation, startOffset: record.lowerBound, endOffset: record.upperBound,
                firstSequence: chunk.sequence, lastSequence: chunk.sequence)
        }
        return chunk
    }

    private var isRotationPending: Bool { pendingRotations.load(ordering: .sequentiallyConsistent) > 0 }

    /// Queues a rotation for the registrar. Called with the writer locked, right where
    /// the rotation happened.
    private func enqueue(_ job: Registration) {
        pendingRotations.add(1, ordering: .sequentiallyConsistent)
        segmentNames.withLock { $0.unsettled += 1 }
        registrar.yield(.rotation(job))
    }

    /// What the registrar task does, one job after the other, so that registrations
    /// reach the registry in the order the generations were made.
    enum RegistrarJob: Sendable {
        /// Register a new generation and retire the old one.
        case rotation(Registration)
        /// A registry (re)appeared on the bus: register the current segment there.
        case registryAppeared
    }

    /// A new generation to register, as Sendable facts (the writer objects stay behind
    /// the mutex).
    struct Registration: Sendable {
        var new: UnixFileDescriptor
        var newName: String
        var newGeneration: UInt64
        var old: SegmentID

        init(_ rotation: ChannelWriter.Rotation) throws {
            new = try UnixFileDescriptor(duplicating: rotation.new.fileDescriptor.rawValue)
            newName = rotation.new.id.name
            newGeneration = rotation.new.header.generation
            old = rotation.old.id
        }
    }

    /// Collects garbage now: copies the live chunks into a new generation.
    public func collectGarbage() throws {
        try writer.withLock { writer throws in
            let rotation: ChannelWriter.Rotation
            do throws(SegmentError) {
                rotation = try writer.collectGarbage()
            } catch {
                throw ShmBusError(.invalidArgument, error.message)
            }
            enqueue(try Registration(rotation))
        }
    }

    /// The segment chunks are published into now.
    public var currentSegment: String { writer.withLock { $0.current.id.name } }
    /// The last sequence published.
    public var lastSequence: UInt64 { writer.withLock { $0.lastSequence } }
    /// `Committed` signals emitted so far.
    public var signalsSent: UInt64 { notifier.signalsSent }

    /// Waits until every generation created so far is registered and announced.
    public func flush() async {
        await withCheckedContinuation { continuation in
            let done = segmentNames.withLock { state -> Bool in
                if state.unsettled == 0 { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
        notifier.flush()
    }

    /// Stops publishing: flushes, then closes the connection. Non-persistent segments
    /// leave the registry as the connection leaves the bus; persistent ones stay.
    public func close() async {
        await flush()
        registrar.finish()
        for task in tasks.withLock({ $0 }) { task.cancel() }
        export.withLock { $0?.cancel() }
        connection.close()
    }

    // MARK: Registration

    private func exportObject() async throws {
        let channel = self.channel
        let writer = self.writer
        let interface = try ShmBusProtocol.publisherInterface()
            .implementingProperty("Channels", get: { .array(.string, [.string(channel)]) })
            .implementingProperty("CurrentSegment", get: { .string(writer.withLock { $0.current.id.name }) })
            .implementing([
                "OpenSegment": { call in
                    let name = try call.arguments.decode(String.self)
                    do {
                        return [.unixFD(try Self.readOnlyDescriptor(of: name, in: writer))]
                    } catch let error as ShmBusError {
                        throw error.dbusError
                    }
                }
            ])
        let handle = try await connection.export([interface], at: ShmBusProtocol.publisherPath)
        export.withLock { $0 = handle }
    }

    /// A read-only descriptor of the segment `name` if readers may still need it (the
    /// current one or one not retired yet): what `Publisher1.OpenSegment` hands out.
    static func readOnlyDescriptor(of name: String, in writer: Lock<ChannelWriter>) throws(ShmBusError) -> UnixFileDescriptor {
        // Only a dup under the writer's lock (which publishing takes); the reopen
        // through /proc, a path lookup, happens outside it.
        let found = writer.withLock { writer -> Result<UnixFileDescriptor, ShmBusError>? in
            guard let segment = writer.liveSegments.first(where: { $0.id.name == name }) else { return nil }
            do throws(Errno) {
                return .success(try UnixFileDescriptor(duplicating: segment.fileDescriptor.rawValue))
            } catch {
                return .failure(ShmBusError(.bus, "segment '\(name)': dup: \(error)"))
            }
        }
        guard let found else { throw ShmBusError(.notFound, "segment '\(name)' is not one this publisher still serves") }
        let writable = try found.get()
        do throws(SegmentError) {
            return try Memfd.reopenReadOnly(writable)
        } catch {
            throw ShmBusError(.bus, "segment '\(name)': \(error.message)")
        }
    }

    /// A descriptor of the current segment of our own (to send to the registry), and
    /// its name.
    private func currentSegmentDescriptor() throws -> (UnixFileDescriptor, String) {
        try writer.withLock { writer throws -> (UnixFileDescriptor, String) in
            (try UnixFileDescriptor(duplicating: writer.current.fileDescriptor.rawValue), writer.current.id.name)
        }
    }

    /// Registers the current segment (with its doorbell) as the channel's first, when
    /// the publisher opens.
    func registerCurrent() async throws {
        let (segment, name) = try currentSegmentDescriptor()
        try await register(segment, replacing: nil)
        segmentNames.withLock { $0.registered = name }
    }

    private func register(_ segment: UnixFileDescriptor, replacing old: String?) async throws {
        let doorbell = try writer.withLock { try UnixFileDescriptor(duplicating: $0.doorbell.fileDescriptor.rawValue) }
        var options: [String: DBusVariant] = [:]
        if self.options.persistent { options["persistent"] = DBusVariant(true) }
        if self.options.persistent, let ttl = self.options.ttl {
            options["ttl"] = DBusVariant(UInt64(max(0, ttl.components.seconds)))
        }
        if let old { options["replaces"] = DBusVariant(old) }
        options["doorbell"] = DBusVariant(.unixFD(doorbell))
        _ = try await registry.registerSegment(channel: channel, fd: segment, options: options)
    }

    /// Registers each new generation in order, then retires the old one, then
    /// announces what the new one holds; and registers again after a registry restart.
    private func startRegistrar(_ stream: AsyncStream<RegistrarJob>) {
        let task = Task { [weak self] in
            for await job in stream {
                guard let self else { return }
                switch job {
                case .rotation(let rotation): await self.register(rotation)
                case .registryAppeared: await self.registerAfterRestart()
                }
            }
        }
        tasks.withLock { $0.append(task) }
    }

    private func register(_ job: Registration) async {
        do {
            try await registerAsCurrent(job.new, name: job.newName)
        } catch let error as ShmBusError where error.code == .registryUnavailable {
            // It gets the current segment when it is back; readers of the old
            // generation then move there and report what they missed.
            logger.debug("registry down; generation not registered", metadata: ["segment": "\(job.newName)"])
        } catch {
            logger.warning(
                "cannot register the new generation; retiring the old one anyway",
                metadata: ["segment": "\(job.newName)", "error": "\(error)"])
        }
        writer.withLock { _ = $0.retire(segment: job.old) }
        // When this was the last rotation pending, publishers announce their own commits
        // again from here on.
        pendingRotations.subtract(1, ordering: .sequentiallyConsistent)
        // Announce everything the generation just registered holds: nobody announced the
        // commits made into it while it waited. The range is read after the decrement,
        // so it covers every commit that saw a rotation pending; if a later generation
        // has replaced it meanwhile, this one is complete, and the later one's job
        // announces the later one.
        if let announce = writer.withLock({ Self.wholeRange(ofGeneration: job.newGeneration, in: $0) }) {
            notifier.committed(announce)
        }
        // Only now, registered and announced, does the rotation stop holding up `flush`.
        let waiters = segmentNames.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.unsettled -= 1
            guard state.unsettled == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Registers `segment` as the channel's current one, replacing the segment of ours
    /// the registry has as current. When the registry restarted since we last looked
    /// (it knows nothing of the segment we would replace, or already has a newer one of
    /// ours), asks it what it has and tries once more.
    private func registerAsCurrent(_ segment: UnixFileDescriptor, name: String) async throws {
        let known = segmentNames.withLock { $0.registered }
        do {
            try await register(segment, replacing: known.isEmpty ? nil : known)
        } catch let error as ShmBusError where [.notFound, .channelBusy, .invalidArgument].contains(error.code) {
            let me = connection.uniqueName
            let current = try await registry.channels().first { $0.name == channel && $0.owner == me }?.currentSegment ?? ""
            // (A call that got no answer from a dying registry may still have been
            // carried out by the one D-Bus activated in its place.)
            if current != name { try await register(segment, replacing: current.isEmpty ? nil : current) }
        }
        segmentNames.withLock { $0.registered = name }
    }

    /// After a registry (re)appeared: registers the current segment unless a rotation
    /// registered it there already.
    private func registerAfterRestart() async {
        do {
            let (segment, name) = try currentSegmentDescriptor()
            let me = connection.uniqueName
            let listed = try await registry.channels().first { $0.name == channel }
            if listed?.currentSegment == name, listed?.owner == me {
                segmentNames.withLock { $0.registered = name }
            } else {
                try await registerAsCurrent(segment, name: name)
            }
            notifier.flush()
        } catch {
            logger.warning("re-registration failed", metadata: ["error": "\(error)"])
        }
    }

    /// The range of every record in the writer's segment of `generation` (the current
    /// one, or one not retired yet), copied chunks included; nil when it is empty or gone.
    static func wholeRange(ofGeneration generation: UInt64, in writer: ChannelWriter) -> CommittedRange? {
        guard let segment = writer.liveSegments.first(where: { $0.header.generation == generation }) else { return nil }
        guard let first = segment.firstSequence else { return nil }
        return CommittedRange(
            segment: segment.id.name, generation: generation, startOffset: UInt64(SegmentLayout.headerSize),
            endOffset: segment.committedEnd, firstSequence: first, lastSequence: segment.lastSequence)
    }

    /// Re-registers the current segment whenever a registry (re)appears on the bus.
    private func startFollowingRegistry() async throws {
        let owners = try await connection.nameOwnerChanges(for: ShmBusProtocol.registryName)
        let task = Task { [weak self] in
            do {
                for try await change in owners {
                    guard let self else { return }
                    // A new registry knows none of our segments.
                    self.segmentNames.withLock { $0.registered = "" }
                    guard let owner = change.newOwner else { continue }
                    self.logger.info("registry appeared; registering again", metadata: ["owner": "\(owner)"])
                    self.registrar.yield(.registryAppeared)
                }
            } catch {
                // The connection closed.
            }
        }
        tasks.withLock { $0.append(task) }
    }
}

/// Where a published chunk is.
public struct PublishedChunk: Sendable, Hashable, Codable {
    /// The segment's name.
    public var segment: String
    public var generation: UInt64
    /// The payload's byte offset in the segment.
    public var offset: UInt64
    public var length: UInt64
    public var sequence: UInt64
}
