import DBus
import Foundation
import Logging
import SharedSegments
import ShmBusPolicy
import ShmBusProtocol
import ShmBusSystem

/// The registry's state and rules: which segments exist, who owns which channel,
/// quotas, lifetimes. The bus side (``RegistryService``) turns calls and
/// NameOwnerChanged into calls of this actor, and this actor keeps the per-channel and
/// per-segment objects exported and emits the registry's signals.
///
/// Every method finishes its state change before its first `await`, so interleaved
/// calls (actors are reentrant) always see a consistent registry.
actor SegmentRegistry {
    struct Segment {
        let name: String
        let channel: String
        /// The registering connection; nil once it has left the bus.
        var owner: String?
        /// The Unix user (and sandboxed app) that registered it: whose it stays.
        let holder: ChannelOwner
        /// Who else may read it.
        let readers: ReadPolicy
        let file: InspectedSegment
        let doorbell: UnixFileDescriptor?
        let persistent: Bool
        let ttl: Duration?
        let createdMicroseconds: UInt64
        var expiresAt: ContinuousClock.Instant?
        /// Record bytes a collection copied into it (or, taken back from the keeper, all
        /// it held then): not counted as published in it.
        var committedAtRegistration: UInt64 = 0
        var expiresMicroseconds: UInt64 = 0
        let replaces: String
        var replacedBy = ""
        var state = SegmentState.active
        var export: DBusExport?
        /// The doorbell's share of the ``DescriptorBudget`` (the segment's own is its
        /// file's), taken when it is exported.
        var doorbellCharge: DescriptorBudget.Charge?

        var path: ObjectPath { ShmBusProtocol.segmentPath(name) }
    }

    struct Channel {
        let name: String
        var owner: String?
        /// Whose the channel is while it holds any segment: that of its current segment.
        var holder: ChannelOwner
        /// Segment names in registration order.
        var segments: [String] = []
        var current: String?
        var export: DBusExport?
        var statistics = ChannelStatistics()

        var path: ObjectPath { ShmBusProtocol.channelPath(name) }
    }

    let configuration: RegistryConfiguration
    let logger: Logger
    var segments: [String: Segment] = [:]
    var channels: [String: Channel] = [:]
    /// What each connection, Unix user and sandboxed app holds (SegmentRegistry+Quotas).
    var connectionUsage: [String: Usage] = [:]
    var userUsage: [UInt32: Usage] = [:]
    var appUsage: [String: Usage] = [:]
    /// What the whole registry holds.
    var registryUsage = Usage()
    /// The segments and channels of each connected owner (SegmentRegistry+Holdings).
    var holdings: [String: Holdings] = [:]
    /// The channels each connection was handed descriptors of (statistics' readers).
    var readersByConnection: [String: Set<String>] = [:]
    /// Connections that watch statistics, and the sampling loop waiting for the first.
    var watchers: Set<String> = []
    var watchWaiters: [CheckedContinuation<Void, Never>] = []
    var rootRates = (chunks: 0.0, bytes: 0.0)
    /// The registry's own Unix user, which may use reserved channel names.
    let registryUser = getuid()
    /// Unique names seen leaving the bus. The bus never reuses a unique name, so a
    /// registration racing with its caller's departure is recognised and refused.
    var departed: Set<String> = []
    var departedOrder: [String] = []
    private var root: DBusExport?
    private(set) var connection: DBusConnection?
    /// The keeper of persistent segments, when the service has one.
    private(set) var keeper: KeeperLink?
    var nextEmptinessCheck = ContinuousClock.now
    /// The earliest expiry known: a sweep with none due skips the walk over every
    /// segment (every 250 ms over 10,000 segments, that walk took 6% of the daemon's
    /// time). Whoever sets an expiry lowers it (``lowerNextExpiry(_:)``), and the walk
    /// that comes with each emptiness check sets it anew, so none is missed for long.
    var nextExpiry: ContinuousClock.Instant?

    init(configuration: RegistryConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func attach(connection: DBusConnection, root: DBusExport, keeper: KeeperLink?) {
        self.connection = connection
        self.root = root
        self.keeper = keeper
    }

    // MARK: Queries

    /// Read for `PropertiesChanged` after every registration and removal: a counter
    /// (``registryUsage``), not a sum over every segment, which at 8,000 held took
    /// three quarters of the daemon's time while registering (docs/RELIABILITY.md).
    var totalBytes: UInt64 { registryUsage.bytes }

    /// Whether `reader` may read `segment` (docs/SECURITY.md).
    func mayRead(_ reader: PeerIdentity, _ segment: Segment) -> Bool {
        (try? AccessRules.checkRead(reader, channel: segment.channel, owner: segment.holder, policy: segment.readers)) != nil
    }

    /// The channels of which `reader` may read at least one segment.
    func channelInfos(visibleTo reader: PeerIdentity) -> [ChannelInfo] {
        channels.values.filter { channel in channel.segments.contains { segments[$0].map { mayRead(reader, $0) } ?? false } }
            .sorted { $0.name < $1.name }.map { channel in
                let current = channel.current.flatMap { segments[$0] }
                return ChannelInfo(
                    name: channel.name, owner: channel.owner ?? "", currentSegment: channel.current ?? "",
                    generation: current?.file.generation ?? 0, segmentCount: UInt64(channel.segments.count),
                    bytes: channel.segments.compactMap { segments[$0]?.file.capacity }.reduce(0, +))
            }
    }

    /// The segments `reader` may read, of one channel or (`channel` empty) all. A named
    /// channel of which it may read none is refused with the rule, as `Lookup` would.
    func segmentInfos(channel: String, visibleTo reader: PeerIdentity) throws(ShmBusError) -> [SegmentInfo] {
        let selected: [Segment]
        if channel.isEmpty {
            selected = segments.values.filter { mayRead(reader, $0) }
        } else {
            guard let entry = channels[channel] else { throw .notFound("no channel '\(channel)' in the registry") }
            let all = entry.segments.compactMap { segments[$0] }
            selected = all.filter { mayRead(reader, $0) }
            if selected.isEmpty, let current = entry.current.flatMap({ segments[$0] }) ?? all.last {
                try AccessRules.checkRead(reader, channel: channel, owner: current.holder, policy: current.readers)
            }
        }
        return selected.sorted { ($0.channel, $0.file.generation, $0.name) < ($1.channel, $1.file.generation, $1.name) }
            .map(info)
    }

    private func info(_ segment: Segment) -> SegmentInfo {
        let live = segment.file.liveState()
        return SegmentInfo(
            name: segment.name, channel: segment.channel, path: segment.path, generation: segment.file.generation,
            capacity: segment.file.capacity, committedBytes: live.committedBytes, chunkCount: live.chunkCount,
            state: segment.state.rawValue, persistent: segment.persistent, createdMicroseconds: segment.createdMicroseconds)
    }

    func segment(_ name: String) -> Segment? { segments[name] }
    func channel(_ name: String) -> Channel? { channels[name] }

    /// The newest live chunk with `key` in `channel`: the current segment first, then
    /// the channel's other active segments, newest generation first.
    func lookup(channel: String, key: String, reader: PeerIdentity) throws(ShmBusError) -> (String, ChunkLocation) {
        guard let entry = channels[channel] else { throw .notFound("no channel '\(channel)' in the registry") }
        var candidates = entry.segments.compactMap { segments[$0] }.filter { $0.state == .active }
        candidates.sort { ($0.name == entry.current ? 1 : 0, $0.file.generation) > ($1.name == entry.current ? 1 : 0, $1.file.generation) }
        // A caller who may read none of the channel is refused before any key is looked
        // at: NotFound for a missing key would tell which keys exist.
        if let first = candidates.first, !candidates.contains(where: { mayRead(reader, $0) }) {
            try AccessRules.checkRead(reader, channel: channel, owner: first.holder, policy: first.readers)
        }
        var lastError: ShmBusError?
        for segment in candidates {
            do {
                if let found = try segment.file.latest(key: key) {
                    try AccessRules.checkRead(reader, channel: channel, owner: segment.holder, policy: segment.readers)
                    return (segment.name, found)
                }
            } catch {
                lastError = error
            }
        }
        if let lastError { throw lastError }
        throw .notFound("no live chunk with key '\(key)' in channel '\(channel)'")
    }

    // MARK: Registration

    struct Registration {
        var channel: String
        var file: InspectedSegment
        var sender: String
        var identity: PeerIdentity
        var readers = ReadPolicy.ownerOnly
        var persistent = false
        var ttl: Duration?
        var replaces = ""
        var doorbell: UnixFileDescriptor?
        var processID: UInt32?
    }

    /// Adds a segment after checking ownership, quotas and `replaces`.
    func register(_ request: Registration) async throws(ShmBusError) -> (String, ObjectPath) {
        let name = request.file.name
        guard !departed.contains(request.sender) else {
            throw .accessDenied("the caller \(request.sender) has left the bus")
        }
        // Whose the channel is first, so that another user hears the rule that keeps it
        // out (the name belongs to a user), not which connection holds it now.
        try AccessRules.checkOwnership(
            request.identity, channel: request.channel, owner: channels[request.channel]?.holder, registryUser: registryUser,
            action: "register on")
        if let channel = channels[request.channel], let owner = channel.owner, owner != request.sender {
            throw .accessDenied("channel '\(request.channel)' is owned by \(owner); only its owner registers segments")
        }
        guard segments[name] == nil else {
            throw .invalidArgument("segment \(name) is already registered")
        }
        try checkQuotas(request)
        var replaced: Segment?
        if !request.replaces.isEmpty {
            guard let old = segments[request.replaces] else {
                throw .notFound("segment \(request.replaces) (to be replaced) is not registered")
            }
            guard old.channel == request.channel else {
                throw .invalidArgument("segment \(request.replaces) belongs to channel '\(old.channel)', not '\(request.channel)'")
            }
            // Its own segment, or (continuing a channel's history) one whose owner has
            // left: the ownership check above has made sure the channel is the caller's.
            guard old.owner == request.sender || old.owner == nil else {
                throw .accessDenied("segment \(request.replaces) is not the caller's")
            }
            guard old.state == .active else {
                throw .invalidArgument("segment \(request.replaces) is already retired (replaced by \(old.replacedBy))")
            }
            guard request.file.generation > old.file.generation else {
                throw .invalidArgument(
                    "a replacement must have a higher generation than \(old.file.generation), got \(request.file.generation)")
            }
            replaced = old
        } else if let current = channels[request.channel]?.current, let active = segments[current],
            active.state == .active, active.owner == request.sender
        {
            throw .channelBusy(
                "channel '\(request.channel)' already has active segment \(current) of this connection; pass the option replaces='\(current)' after garbage collection")
        }

        // All checks passed: change the state, then talk to the bus.
        let now = Date()
        let segment = Segment(
            name: name, channel: request.channel, owner: request.sender, holder: ChannelOwner(request.identity),
            readers: request.readers, file: request.file,
            doorbell: request.doorbell, persistent: request.persistent, ttl: request.ttl,
            createdMicroseconds: UInt64(now.timeIntervalSince1970 * 1_000_000),
            committedAtRegistration: request.file.copiedBytes(), replaces: request.replaces)
        segments[name] = segment
        account(segment, 1)
        let isNewChannel = channels[request.channel] == nil
        var channel = channels[request.channel] ?? Channel(name: request.channel, holder: segment.holder)
        let ownerChanged = channel.owner != request.sender
        channel.owner = request.sender
        channel.holder = segment.holder
        channel.segments.append(name)
        channel.current = name
        storeChannel(channel, as: request.channel)
        noteRegistered(segment, replaced: replaced, processID: request.processID)
        var dropped: [Segment] = []
        if let replaced {
            segments[replaced.name]?.state = .retired
            segments[replaced.name]?.replacedBy = name
            // A channel keeps its current segment and the one it replaced, whoever
            // published into them: readers still on an older one finish from their own
            // mapping. (Before histories were continued, departed publishers could leave
            // several active segments on one channel; they go here too.)
            for other in channel.segments where other != name && other != replaced.name {
                if let older = segments[other] {
                    dropped.append(older)
                    forget(older)
                }
            }
        }
        logger.info(
            "segment registered",
            metadata: [
                "segment": "\(name)", "channel": "\(request.channel)", "owner": "\(request.sender)",
                "generation": "\(request.file.generation)", "capacity": "\(request.file.capacity)",
                "persistent": "\(request.persistent)",
            ])

        await exportSegment(name)
        if isNewChannel {
            await exportChannel(request.channel)
        } else {
            let moved: [Channel1.PropertyName] = [.currentSegment, .generation, .segments]
            await channelChanged(request.channel, ownerChanged ? [.owner] + moved : moved)
        }
        emit(Registry1.SegmentAdded(segment: name, channel: request.channel, path: segment.path, generation: request.file.generation))
        if let replaced {
            await segmentChanged(replaced.name, [.state, .replacedBy])
            emit(Registry1.SegmentReplaced(
                oldSegment: replaced.name, newSegment: name, channel: request.channel, generation: request.file.generation))
        }
        for old in dropped { emit(Registry1.SegmentRemoved(segment: old.name, channel: old.channel, reason: RemovalReason.replaced.rawValue)) }
        await rootChanged([.channelCount, .segmentCount, .totalBytes])
        // Answered once the keeper holds it: from then on a persistent segment outlives
        // this process.
        if request.persistent, let kept = keptSegment(name) { await keeper?.keep(kept) }
        return (name, segment.path)
    }

    // MARK: Signals

    func emit<Signal: DBusSignalValue>(_ signal: Signal) {
        do {
            try root?.emit(signal)
        } catch {
            logger.warning("cannot emit \(Signal.memberName)", metadata: ["error": "\(error)"])
        }
    }

    func rootChanged(_ names: [Registry1.PropertyName]) async {
        try? await root?.propertiesChanged(names)
    }
}

/// Where a chunk's payload lies in its segment, and what the chunk says of itself.
struct ChunkLocation: Sendable {
    var offset: UInt64
    var length: UInt64
    var sequence: UInt64
    var timestamp: UInt64
    var expiry: UInt64
    var attributes: ChunkAttributes
}
