import Foundation
import Logging
import SharedSegments
import ShmBusPolicy
import ShmBusProtocol

/// How segments leave the registry: unregistered by their owner, with their owner's
/// departure from the bus, expired, or left empty by a departed publisher. Every
/// removal is linear in the number of segments removed (docs/RELIABILITY.md, "Fair
/// under load").
extension SegmentRegistry {
    /// Removes a segment on behalf of `sender`.
    func unregister(_ name: String, sender: String, identity: PeerIdentity) async throws(ShmBusError) {
        guard let segment = segments[name] else { throw .notFound("no segment '\(name)' in the registry") }
        if let owner = segment.owner {
            guard owner == sender else { throw .accessDenied("segment \(name) belongs to \(owner); only its owner may unregister it") }
        } else {
            try AccessRules.checkOwnership(
                identity, channel: segment.channel, owner: channels[segment.channel]?.holder ?? segment.holder,
                registryUser: registryUser, action: "unregister a segment of")
        }
        await remove([segment], reason: .unregistered)
        // Answered once the keeper has let go too: an unregistered segment must not
        // come back with the next registry.
        if segment.persistent { await keeper?.settle() }
    }

    /// A connection left the bus: its non-persistent segments go at once; persistent
    /// ones stay until their ttl.
    func ownerLeft(_ name: String) async {
        departed.insert(name)
        departedOrder.append(name)
        if departedOrder.count > 65_536 {
            departed.remove(departedOrder.removeFirst())
        }
        var removed: [Segment] = []
        var orphaned: [String] = []
        accountDeparture(of: name)
        forgetReader(name)
        watchers.remove(name)
        // What it held, not every segment and channel: see SegmentRegistry+Holdings.
        let held = takeHoldings(of: name)
        for segment in held.segments.sorted().compactMap({ segments[$0] }) where segment.owner == name {
            if segment.persistent {
                segments[segment.name]?.owner = nil
                if let ttl = segment.ttl {
                    segments[segment.name]?.expiresAt = .now + ttl
                    lowerNextExpiry(.now + ttl)
                    let seconds = ttl.inSeconds
                    segments[segment.name]?.expiresMicroseconds = UInt64((Date().timeIntervalSince1970 + seconds) * 1_000_000)
                }
                orphaned.append(segment.name)
                keeper?.ownerLeft(segment.name, expires: segments[segment.name]?.expiresMicroseconds ?? 0)
            } else {
                removed.append(segment)
            }
        }
        var channelsLeft: [String] = []
        for channel in held.channels.sorted() where channels[channel]?.owner == name {
            channels[channel]?.owner = nil
            channelsLeft.append(channel)
        }
        guard !removed.isEmpty || !orphaned.isEmpty || !channelsLeft.isEmpty else { return }
        logger.info("owner left the bus", metadata: ["owner": "\(name)", "removed": "\(removed.count)", "kept": "\(orphaned.count)"])
        await remove(removed, reason: .ownerExited)
        for segment in orphaned { await segmentChanged(segment, [.owner, .expires]) }
        for channel in channelsLeft where channels[channel] != nil { await channelChanged(channel, [.owner]) }
    }

    /// Removes persistent segments whose ttl has passed.
    func sweep() async {
        let now = ContinuousClock.now
        var expired: [Segment] = []
        if now >= nextEmptinessCheck || (nextExpiry.map { $0 <= now } ?? false) {
            nextExpiry = nil
            for segment in segments.values {
                guard let at = segment.expiresAt else { continue }
                if at <= now { expired.append(segment) } else { lowerNextExpiry(at) }
            }
        }
        let names = Set(expired.map(\.name))
        expired += emptyLeftovers(now: now).filter { !names.contains($0.name) }
        if !expired.isEmpty { await remove(expired, reason: .expired) }
    }

    /// Notes an expiry set (see ``nextExpiry``).
    func lowerNextExpiry(_ instant: ContinuousClock.Instant) {
        if nextExpiry.map({ instant < $0 }) ?? true { nextExpiry = instant }
    }

    /// Persistent segments whose owner left and that hold no live chunk any more (each
    /// expired or was replaced): nobody will write them again, so there is nothing to
    /// keep them for, and expired data are reclaimed without anyone publishing. A
    /// current segment goes with the retired one it replaced, which holds only older
    /// versions of the same keys. Looked at every few seconds, not at every sweep:
    /// it reads the records.
    private func emptyLeftovers(now: ContinuousClock.Instant) -> [Segment] {
        guard now >= nextEmptinessCheck else { return [] }
        nextEmptinessCheck = now + configuration.emptinessCheckInterval
        let realNow = RealtimeClock.now()
        var out: [Segment] = []
        for segment in segments.values where segment.owner == nil && segment.state == .active {
            guard !segment.file.hasLiveChunk(now: realNow) else { continue }
            out.append(segment)
            if !segment.replaces.isEmpty, let older = segments[segment.replaces], older.owner == nil, older.state == .retired {
                out.append(older)
            }
        }
        return out
    }

    /// Removes segments from the state, then announces them and withdraws their objects.
    /// The cost is linear in the number removed: an owner leaving with 10,000 segments
    /// has them all announced within the contract's second.
    private func remove(_ removed: [Segment], reason: RemovalReason) async {
        var touched = Set<String>()
        for segment in removed { touched.insert(segment.channel) }
        // The objects go when their exports are released: the segments' with `removed`
        // (the caller's copies), the channels' with `withdrawn`, both after the
        // announcements, so that `SegmentRemoved` is not queued behind thousands of
        // `InterfacesRemoved`.
        let withdrawn = touched.compactMap { channels[$0]?.export }
        for segment in removed { forget(segment) }
        segments.shrinkIfSparse()
        channels.shrinkIfSparse()
        // One line per segment for the usual few; a departure of thousands is one line.
        let each: Logger.Level = removed.count > 100 ? .debug : .info
        if removed.count > 100 {
            logger.info("segments removed", metadata: ["count": "\(removed.count)", "reason": "\(reason.rawValue)"])
        }
        for segment in removed {
            logger.log(level: each, "segment removed", metadata: ["segment": "\(segment.name)", "reason": "\(reason.rawValue)"])
            emit(Registry1.SegmentRemoved(segment: segment.name, channel: segment.channel, reason: reason.rawValue))
        }
        withExtendedLifetime(withdrawn) {}
        for channel in touched where channels[channel] != nil {
            await channelChanged(channel, [.currentSegment, .generation, .segments])
        }
        if !removed.isEmpty { await rootChanged([.channelCount, .segmentCount, .totalBytes]) }
    }

    /// Drops a segment (and its channel when it was the last one) from the state. The
    /// exports go with the entries, which unexports the objects.
    func forget(_ segment: Segment) {
        guard let held = segments.removeValue(forKey: segment.name) else { return }
        account(held, -1)
        if segment.persistent { keeper?.drop(segment.name) }
        guard var channel = channels[segment.channel] else { return }
        channel.segments.removeAll { $0 == segment.name }
        // The current segment of a continued history went (its publisher failed and
        // withdrew it, or left without persistence) while the segment it replaced is
        // still here: that one, left by a departed publisher and never marked retired
        // in its own header, is the channel's current segment again.
        if channel.current == segment.name, !segment.replaces.isEmpty, let previous = segments[segment.replaces],
            previous.owner == nil, previous.state == .retired
        {
            segments[segment.replaces]?.state = .active
            segments[segment.replaces]?.replacedBy = ""
        }
        if channel.current == segment.name {
            channel.current = channel.segments.last { segments[$0]?.state == .active } ?? channel.segments.last
            if let current = channel.current.flatMap({ segments[$0] }) { channel.holder = current.holder }
        }
        storeChannel(channel.segments.isEmpty ? nil : channel, as: segment.channel)
    }
}
