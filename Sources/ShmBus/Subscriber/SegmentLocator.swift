import DBus
import Logging
import SharedSegments

/// Where segments come from: the registry's calls and a publisher's, so that the
/// locator's rules can be tested without a bus (SegmentLocatorTests).
protocol SegmentSources: Sendable {
    /// The channel's current segment and owner (`Channel1`), nil when there is no
    /// such channel.
    func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)?
    /// `Registry1.OpenSegment`.
    func openSegment(_ name: String) async throws(ShmBusError) -> (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary)
    /// `Publisher1.OpenSegment` of the connection `owner`.
    func openSegment(_ name: String, fromPublisher owner: String) async throws(ShmBusError) -> UnixFileDescriptor
    /// `Publisher1.CurrentSegment` of the connection `owner`.
    func currentSegment(ofPublisher owner: String) async throws(ShmBusError) -> String
    /// `Publisher1.Lease` of the connection `owner`.
    func lease(_ page: UnixFileDescriptor, atPublisher owner: String) async throws(ShmBusError)
}

/// The sources on the bus.
struct BusSegmentSources: SegmentSources {
    let registry: RegistryClient

    /// How long a subscriber waits for a publisher's answer: a stopped publisher must
    /// not hold up the fallback to the registry for long.
    static let publisherCallTimeout: Duration = .seconds(2)

    func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)? {
        try await registry.channel(channel).map { ($0.currentSegment, $0.owner) }
    }

    func openSegment(_ name: String) async throws(ShmBusError) -> (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary) {
        try await registry.openSegment(name)
    }

    func openSegment(_ name: String, fromPublisher owner: String) async throws(ShmBusError) -> UnixFileDescriptor {
        let publisher = ShmBusProtocol.publisher(owner, on: registry.connection)
        return try await ShmBusError.rethrowing { try await publisher.openSegment(segment: name, timeout: Self.publisherCallTimeout) }
    }

    func currentSegment(ofPublisher owner: String) async throws(ShmBusError) -> String {
        let publisher = ShmBusProtocol.publisher(owner, on: registry.connection)
        return try await ShmBusError.rethrowing {
            try await publisher.base.property(Publisher1.PropertyName.currentSegment.rawValue, timeout: Self.publisherCallTimeout)
                .decode(as: String.self)
        }
    }

    /// With the default timeout, not ``publisherCallTimeout``: nothing of this
    /// publisher's can be read without it, so there is no fallback to hurry to.
    func lease(_ page: UnixFileDescriptor, atPublisher owner: String) async throws(ShmBusError) {
        let publisher = ShmBusProtocol.publisher(owner, on: registry.connection)
        do {
            try await publisher.lease(page: page)
        } catch let error as DBusError where !error.name.hasPrefix("org.shmbus.Error.") {
            // Not the registry's: a publisher that did not answer, or left.
            throw ShmBusError(.bus, "the publisher \(owner) did not take the lease page: \(error.message)", cause: .bus(error))
        } catch {
            throw ShmBusError.wrapping(error) ?? ShmBusError(.bus, "Publisher1.Lease: \(error)")
        }
    }
}

/// A segment opened for reading, with the doorbell its writer registered.
struct OpenedSegment: Sendable {
    var reader: SegmentReader
    var doorbell: Doorbell?
}

/// Where a subscriber finds the segments of its channel: the registry first, the
/// channel's publisher (`Publisher1.OpenSegment`) when the registry does not have
/// a segment or is away, and the channel's current segment as the last resort (the
/// cursor then reports what it skipped as a gap).
///
/// It asks for one channel's object (`Channel1`), never for the whole registry.
/// What a publisher sends is checked more strictly than what the registry sends,
/// since no registry vetted it.
struct SegmentLocator: Sendable {
    let channel: String
    let sources: any SegmentSources
    let logger: Logger
    /// The subscriber's lease, for segments whose memory their writer reuses.
    let lease: SubscriberLease

    /// The channel's current segment and owner, nil when the registry has no such
    /// channel or it has no segment.
    func current() async throws(ShmBusError) -> (segment: String, owner: String)? {
        guard let found = try await sources.currentSegment(of: channel), !found.segment.isEmpty else { return nil }
        return found
    }

    /// The channel's current segment, waiting up to `timeout` for it to appear.
    /// Throws ``ShmBusError`` or `CancellationError`.
    func waitForChannel(timeout: Duration) async throws -> (segment: String, owner: String) {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let found = try await current() { return found }
            guard ContinuousClock.now < deadline else {
                throw ShmBusError.notFound("no channel '\(channel)' in the registry (waited \(timeout))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Opens a segment and its doorbell through the registry.
    func open(_ name: String) async throws(ShmBusError) -> OpenedSegment {
        let (fd, info) = try await sources.openSegment(name)
        let reader = try await reader(of: fd, name: name, writer: info.owner)
        // A doorbell that does not open leaves the subscriber polling, not failing.
        let doorbell = info.doorbell.flatMap { try? Doorbell.open($0) }
        return OpenedSegment(reader: reader, doorbell: doorbell)
    }

    /// A reader of segment `name` in `fd`. A segment whose memory its writer reuses
    /// (format version 2) is read with the subscriber's lease, handed to `writer` first
    /// if it does not have it yet; one whose memory went to another generation
    /// meanwhile is `NotFound`, as if the registry had dropped it.
    func reader(of fd: UnixFileDescriptor, name: String, writer: String?) async throws(ShmBusError) -> SegmentReader {
        let reader: SegmentReader
        if let writer, let page = lease.page(registeredWith: writer) {
            reader = try Self.read(fd, name, lease: page, writer: writer)
        } else {
            switch Result(catching: { () throws(SegmentError) in try SegmentReader(fd: fd) }) {
            case .success(let plain):
                reader = plain
            case .failure(let error) where error.kind == .leaseRequired:
                guard let writer, !writer.isEmpty else {
                    throw .badSegment("segment \(name) reuses its memory, and nobody says who writes it")
                }
                reader = try Self.read(fd, name, lease: try await lease.register(with: writer, through: sources), writer: writer)
            case .failure(let error):
                throw ShmBusError(error, context: "segment \(name)")
            }
        }
        guard reader.header.name == name else {
            // Reused memory carries another generation now; anything else lied.
            if reader.header.isReusable { throw .notFound("segment \(name) is gone: its memory holds \(reader.header.name) now") }
            throw .badSegment("the descriptor for segment \(name) holds segment \(reader.header.name)")
        }
        return reader
    }

    private static func read(_ fd: UnixFileDescriptor, _ name: String, lease: ReadLease, writer: String) throws(ShmBusError) -> SegmentReader {
        do {
            return try SegmentReader(fd: fd, lease: lease, writer: writer)
        } catch {
            throw ShmBusError(error, context: "segment \(name)")
        }
    }

    /// Opens a segment, or returns nil when the registry does not have it (any more).
    func openIfRegistered(_ name: String) async throws(ShmBusError) -> OpenedSegment? {
        do {
            return try await open(name)
        } catch where error.code == .notFound {
            return nil
        }
    }

    /// What the channel's owner made of `OpenSegment`.
    enum OwnerReply {
        case opened(SegmentReader)
        /// `org.shmbus.Error.NotFound`: it does not serve that segment (retired).
        case notServed
        /// No answer, another error, or a segment that failed the checks.
        case failed
    }

    /// Asks `owner`, the channel's owner as the registry last named it, for segment
    /// `name`. What it sends is checked like a segment from the registry, and more:
    /// that it is the segment asked for, of this channel, and of a later generation
    /// than `leaving`, so that no owner can lead a subscriber in circles or back in
    /// time.
    func openFromOwner(_ owner: String, _ name: String, after leaving: UInt64) async -> OwnerReply {
        let fd: UnixFileDescriptor
        do {
            fd = try await sources.openSegment(name, fromPublisher: owner)
        } catch where error.code == .notFound {
            return .notServed
        } catch {
            logger.debug("the channel's owner did not answer OpenSegment", metadata: ["segment": "\(name)", "error": "\(error)"])
            return .failed
        }
        do {
            let reader = try await reader(of: fd, name: name, writer: owner)
            guard reader.header.channel == channel, reader.header.generation > leaving else {
                logger.warning(
                    "the channel's owner sent a segment that does not follow the one being read",
                    metadata: [
                        "asked": "\(name)", "got": "\(reader.header.name)", "channel": "\(reader.header.channel)",
                        "generation": "\(reader.header.generation)", "leaving": "\(leaving)",
                    ])
                return .failed
            }
            return .opened(reader)
        } catch {
            logger.warning("the channel's owner sent a segment that is not valid", metadata: ["segment": "\(name)", "error": "\(error)"])
            return .failed
        }
    }

    /// `owner`'s `CurrentSegment`, nil when it does not answer.
    func ownersCurrentSegment(_ owner: String) async -> String? {
        guard let name = try? await sources.currentSegment(ofPublisher: owner), !name.isEmpty else { return nil }
        return name
    }

    /// The successor `id` of a retired segment of generation `generation`, in memory
    /// the subscriber's lease mapped before (reused by its writer), if it is there: no
    /// call to anyone. Checked as a segment from the registry is, and that it follows.
    func cachedSuccessor(_ id: SegmentID, after generation: UInt64, writer: String?) -> SegmentReader? {
        guard let writer, let page = lease.page, let reader = SegmentReader.reused(id, lease: page, writer: writer),
            reader.header.channel == channel, reader.header.generation > generation
        else { return nil }
        return reader
    }

    /// Finds the successor of the retired segment being read (`mine`, of generation
    /// `generation`): through the registry, or through its publisher when the registry
    /// does not have it or is away. If neither has it (the reader fell two collections
    /// behind), the channel's current segment. Waits while the registry is down, and
    /// up to ten seconds of a running registry otherwise. Nil when no one has it and
    /// `ownerGone` says the publisher has left the bus: a publisher that was not
    /// persistent takes its segments with it, so there is nothing to wait for. Throws
    /// ``ShmBusError`` or `CancellationError`. `passed` says which segments the reader
    /// has read and left: a current segment among them is not a place to jump to.
    func successor(
        _ successor: SegmentID, of mine: String, generation: UInt64, owner: @Sendable () -> String?,
        passed: @Sendable (String) -> Bool = { _ in false }, ownerGone: @Sendable () -> Bool = { false }
    ) async throws -> OpenedSegment? {
        var deadline = ContinuousClock.now + .seconds(10)
        while true {
            let attempt: Result<OpenedSegment?, ShmBusError>
            do {
                attempt = .success(
                    try await successorThroughRegistry(successor, of: mine, generation: generation, owner: owner(), passed: passed))
            } catch {
                attempt = .failure(error)
            }
            switch attempt {
            case .success(let opened?):
                return opened
            case .success(nil):
                break
            case .failure(let error) where error.code == .registryUnavailable:
                if let opened = await successorWithoutRegistry(successor, of: mine, generation: generation, owner: owner()) {
                    return opened
                }
                // Otherwise the publisher registers its current segment when the
                // registry is back, however long that takes. Only time with a running
                // registry counts towards the deadline.
                deadline = ContinuousClock.now + .seconds(10)
            case .failure(let error):
                throw error
            }
            if ownerGone() { return nil }
            guard ContinuousClock.now < deadline else {
                throw ShmBusError.notFound(
                    "segment \(successor.name), the successor of \(mine), is neither in the registry nor served by the channel's publisher")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// One look through the registry, then the owner, then the channel's current
    /// segment; nil when none has it yet.
    private func successorThroughRegistry(
        _ successor: SegmentID, of mine: String, generation: UInt64, owner: String?, passed: (String) -> Bool
    ) async throws(ShmBusError) -> OpenedSegment? {
        if let opened = try await openIfRegistered(successor.name) { return opened }
        // Not in the registry: not yet (a restarted registry learns only the
        // publisher's current segment), or not any more. Its writer serves it as long
        // as it is not retired, which saves the chunks a jump to the current segment
        // would skip.
        if let owner, case .opened(let reader) = await openFromOwner(owner, successor.name, after: generation) {
            return OpenedSegment(reader: reader)
        }
        // Not one read before: the registry is behind then (a publisher that reuses
        // memory retires a segment before it registers the next).
        if let current = try await current()?.segment, current != successor.name, current != mine, !passed(current) {
            return try await openIfRegistered(current)
        }
        return nil
    }

    /// The registry is down. The publisher itself serves the segments its readers may
    /// still need; one that it retired already is passed over for its current one, and
    /// the cursor reports the gap.
    private func successorWithoutRegistry(
        _ successor: SegmentID, of mine: String, generation: UInt64, owner: String?
    ) async -> OpenedSegment? {
        guard let owner else { return nil }
        switch await openFromOwner(owner, successor.name, after: generation) {
        case .opened(let reader):
            return OpenedSegment(reader: reader)
        case .notServed:
            // Retired already: only then is a jump (and its gap) warranted.
            if let current = await ownersCurrentSegment(owner), current != mine,
                case .opened(let reader) = await openFromOwner(owner, current, after: generation)
            {
                return OpenedSegment(reader: reader)
            }
            return nil
        case .failed:
            return nil
        }
    }
}
