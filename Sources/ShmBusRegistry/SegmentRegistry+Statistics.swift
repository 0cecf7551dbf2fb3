import DBus
import Foundation
import ShmBusPolicy
import ShmBusProtocol

/// Statistics per channel (docs/PROTOCOL.md, "Statistics"): what the registry can count
/// from the segments it holds and the descriptors it hands out. Chunks and bytes come
/// from the segments' headers (the publisher's own commit words), so they cost
/// nothing on the publish path; rates come from samples, taken once a second while
/// someone watches (``watch(_:)``) and otherwise when a statistic is read.
extension SegmentRegistry {
    struct ChannelStatistics {
        /// The last sequence before the first segment the registry saw accepted
        /// appends: chunks are counted from there.
        var baseSequence: UInt64?
        /// Record bytes committed into generations that were replaced, less what each
        /// had copied from its predecessor.
        var finishedBytes: UInt64 = 0
        var collections: UInt64 = 0
        var publisherProcess: UInt32?
        var readers: [String: ReaderInfo] = [:]
        var sample: Sample?
        var chunkRate = 0.0
        var byteRate = 0.0
        /// What the last PropertiesChanged said, to signal only changes.
        var signalled: Figures?
    }

    struct Sample {
        var at: ContinuousClock.Instant
        var chunks: UInt64
        var bytes: UInt64
    }

    /// Every statistic of a channel, as the properties show them.
    struct Figures: Equatable {
        var publishedChunks: UInt64 = 0
        var publishedBytes: UInt64 = 0
        var chunkRate = 0.0
        var byteRate = 0.0
        var collections: UInt64 = 0
        var committedBytes: UInt64 = 0
        var liveBytes: UInt64 = 0
        var readerCount: UInt32 = 0
        var publisherUser = UInt32.max
        var publisherProcess = UInt32.max
        var timeToLive: UInt64 = 0
    }

    /// Samples older than this are taken again when a statistic is read.
    static let sampleInterval = Duration.seconds(1)

    // MARK: Counting

    /// Called for every segment stored: the channel's first sets where counting
    /// starts; a replacement moves what its predecessor took into the finished bytes.
    func noteRegistered(_ segment: Segment, replaced: Segment?, processID: UInt32?) {
        guard var channel = channels[segment.channel] else { return }
        if channel.statistics.baseSequence == nil { channel.statistics.baseSequence = segment.file.reader.header.baseSequence }
        if let replaced {
            let final = replaced.file.liveState().committedBytes
            channel.statistics.finishedBytes &+= final > replaced.committedAtRegistration ? final - replaced.committedAtRegistration : 0
            channel.statistics.collections &+= 1
        }
        channel.statistics.publisherProcess = processID
        channels[segment.channel] = channel
    }

    /// `OpenSegment` handed `connection` a descriptor of one of `channel`'s segments.
    func noteReader(_ connection: String, channel: String, user: UInt32, process: UInt32?) {
        guard channels[channel] != nil else { return }
        readersByConnection[connection, default: []].insert(channel)
        channels[channel]?.statistics.readers[connection, default: ReaderInfo(
            connection: connection, user: user, process: process ?? .max, descriptors: 0)].descriptors &+= 1
    }

    /// A connection left: it reads nothing any more. Only the channels it read are
    /// touched (``readersByConnection``), as for holdings.
    func forgetReader(_ connection: String) {
        guard let read = readersByConnection.removeValue(forKey: connection) else { return }
        for channel in read { channels[channel]?.statistics.readers[connection] = nil }
    }

    /// The channel's figures now, sampling it again when the last sample is older than
    /// ``sampleInterval`` and nobody watches (or `force`, the watch's tick).
    func figures(of name: String, force: Bool = false) -> Figures? {
        guard var channel = channels[name] else { return nil }
        let active = channel.segments.compactMap { segments[$0] }.filter { $0.state == .active }
        let current = channel.current.flatMap { segments[$0] }
        let now = ContinuousClock.now
        var figures = Figures()
        let live = current?.file.liveState() ?? .init()
        // A channel taken back from the keeper is counted from when it was taken back.
        if channel.statistics.baseSequence == nil { channel.statistics.baseSequence = live.lastSequence }
        let base = channel.statistics.baseSequence ?? 0
        figures.publishedChunks = live.lastSequence > base ? live.lastSequence - base : 0
        let ownBytes = current.map { live.committedBytes > $0.committedAtRegistration ? live.committedBytes - $0.committedAtRegistration : 0 } ?? 0
        figures.publishedBytes = channel.statistics.finishedBytes &+ ownBytes
        figures.committedBytes = active.reduce(0) { $0 &+ $1.file.liveState().committedBytes }
        figures.liveBytes = live.liveBytes
        figures.collections = channel.statistics.collections
        figures.readerCount = UInt32(clamping: channel.statistics.readers.count)
        if channel.owner != nil {
            figures.publisherUser = channel.holder.uid
            figures.publisherProcess = channel.statistics.publisherProcess ?? .max
        }
        let expiries = channel.segments.compactMap { segments[$0]?.expiresAt }
        if let last = expiries.max(), last > now { figures.timeToLive = UInt64((last - now).inSeconds.rounded(.up)) }
        if let sample = channel.statistics.sample {
            let elapsed = (now - sample.at).inSeconds
            // While watched, only the watch's tick samples: a read between two ticks
            // would leave the next tick a sliver of a second to measure, and its rates
            // noise.
            if force || (!isWatched && elapsed >= Self.sampleInterval.inSeconds) {
                channel.statistics.chunkRate = elapsed > 0 ? Double(figures.publishedChunks &- sample.chunks) / elapsed : 0
                channel.statistics.byteRate = elapsed > 0 ? Double(figures.publishedBytes &- sample.bytes) / elapsed : 0
                channel.statistics.sample = Sample(at: now, chunks: figures.publishedChunks, bytes: figures.publishedBytes)
            }
        } else {
            channel.statistics.sample = Sample(at: now, chunks: figures.publishedChunks, bytes: figures.publishedBytes)
        }
        figures.chunkRate = channel.statistics.chunkRate
        figures.byteRate = channel.statistics.byteRate
        channels[name] = channel
        return figures
    }

    /// The readers of `channel`, for a caller who may read it.
    func readers(of channel: String, caller: PeerIdentity) throws(ShmBusError) -> [ReaderInfo] {
        guard let entry = channels[channel] else { throw .notFound("no channel '\(channel)' in the registry") }
        let held = entry.segments.compactMap { segments[$0] }
        if let first = held.first, !held.contains(where: { mayRead(caller, $0) }) {
            try AccessRules.checkRead(caller, channel: channel, owner: first.holder, policy: first.readers)
        }
        return entry.statistics.readers.values.sorted { $0.connection < $1.connection }
    }

    // MARK: Watching

    /// Starts `connection`'s watch (a second call is one watch).
    func watch(_ connection: String) {
        watchers.insert(connection)
        for waiter in watchWaiters { waiter.resume() }
        watchWaiters.removeAll()
    }

    /// Returns once someone watches: the sampling loop sleeps here, not on a timer,
    /// while nobody does.
    func untilWatched() async {
        guard watchers.isEmpty else { return }
        await withCheckedContinuation { watchWaiters.append($0) }
    }

    func unwatch(_ connection: String) throws(ShmBusError) {
        guard watchers.remove(connection) != nil else { throw .notFound("\(connection) does not watch statistics") }
    }

    var isWatched: Bool { !watchers.isEmpty }

    /// One tick of a watch: samples every channel and signals what changed since the
    /// last tick.
    func tickStatistics() async {
        guard isWatched else { return }
        var totalChunks = 0.0, totalBytes = 0.0
        for name in channels.keys.sorted() {
            guard let figures = figures(of: name, force: true) else { continue }
            totalChunks += figures.chunkRate
            totalBytes += figures.byteRate
            let before = channels[name]?.statistics.signalled
            channels[name]?.statistics.signalled = figures
            guard let changed = Self.changedProperties(before, figures), !changed.isEmpty else { continue }
            await channelChanged(name, changed)
        }
        if (totalChunks, totalBytes) != (rootRates.chunks, rootRates.bytes) {
            rootRates = (totalChunks, totalBytes)
            await rootChanged([.chunkRate, .byteRate])
        }
    }

    private static func changedProperties(_ before: Figures?, _ now: Figures) -> [Channel1.PropertyName]? {
        let before = before ?? Figures(publisherUser: .max - 1)  // differs everywhere that matters
        var out: [Channel1.PropertyName] = []
        if before.publishedChunks != now.publishedChunks { out.append(.publishedChunks) }
        if before.publishedBytes != now.publishedBytes { out.append(.publishedBytes) }
        if before.chunkRate != now.chunkRate { out.append(.chunkRate) }
        if before.byteRate != now.byteRate { out.append(.byteRate) }
        if before.collections != now.collections { out.append(.collections) }
        if before.committedBytes != now.committedBytes { out.append(.committedBytes) }
        if before.liveBytes != now.liveBytes { out.append(.liveBytes) }
        if before.readerCount != now.readerCount { out.append(.readerCount) }
        if before.publisherUser != now.publisherUser { out.append(.publisherUser) }
        if before.publisherProcess != now.publisherProcess { out.append(.publisherProcess) }
        if before.timeToLive != now.timeToLive { out.append(.timeToLive) }
        return out
    }
}
