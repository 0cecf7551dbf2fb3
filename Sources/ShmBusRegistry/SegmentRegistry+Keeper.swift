import DBus
import Foundation
import SharedSegments
import ShmBusPolicy
import ShmBusProtocol

/// Persistence across registry restarts: the records the keeper holds, and taking a
/// previous registry's persistent segments back at start-up (docs/PROTOCOL.md,
/// "Persistence across registry restarts").
extension SegmentRegistry {
    /// What the keeper is given for a persistent segment.
    func keptSegment(_ name: String) -> KeptSegment? {
        guard let segment = segments[name], segment.persistent else { return nil }
        let record = Keeper1.Record(
            segment: name, channel: segment.channel, owner: segment.owner ?? "", ownerUid: segment.holder.uid,
            ttl: segment.ttl.map { UInt64(max(0, $0.components.seconds)) },
            expires: segment.expiresMicroseconds == 0 ? nil : segment.expiresMicroseconds,
            created: segment.createdMicroseconds, replaces: segment.replaces.isEmpty ? nil : segment.replaces,
            doorbell: segment.doorbell, ownerApp: segment.holder.appID, readers: segment.readers.wire)
        return KeptSegment(fd: segment.file.readOnlyDescriptor, record: record)
    }

    /// Every persistent segment, for a keeper that has to be given everything.
    func keptSegments() -> [KeptSegment] {
        segments.keys.sorted().compactMap(keptSegment)
    }

    /// Takes back the persistent segments a previous registry left with the keeper,
    /// before this one takes its name. Each descriptor is inspected again as if it were
    /// registered now (the segment may have been corrupted meanwhile); the keeper's
    /// records (same Unix user as this process, checked by ``KeeperLink``) say what the
    /// segment cannot: its owner, ttl and expiry, and which segment it replaced.
    ///
    /// An owner still connected (`connected` says so for each unique name) keeps its
    /// segments and goes on publishing into them; one that left while no registry ran
    /// counts as leaving now, so a ttl starts now. A segment that some other adopted
    /// one replaced is retired; a channel keeps its newest segment and the one that
    /// replaced, as always, and what a registry killed mid-way left beyond that is
    /// dropped.
    ///
    /// The records are checked as the keeper checks them (``Keeper1/Record/problem``): one
    /// that breaks the rules is dropped, not believed. Where the bus can tell (the
    /// owner's Unix user, while it is connected) the bus is believed, not the record.
    func adopt(_ kept: [KeptSegment], connected: (String) async -> Bool) async -> (adopted: Int, dropped: Int) {
        var inspected: [(KeptSegment, InspectedSegment)] = []
        var dropped = 0
        var seen = Set<String>()
        for entry in kept {
            let record = entry.record
            // The descriptor the keeper handed over is needed only until it is inspected
            // (the segment reopens it read-only): closed at once, adopting N segments
            // takes N descriptors more than the registry holds, not 2N.
            defer { try? entry.fd.close() }
            guard let name = record.segment, segments[name] == nil, seen.insert(name).inserted else { continue }
            do {
                if let problem = record.problem { throw ShmBusError.invalidArgument(problem) }
                // Whose it is and who may read it must be known, or nobody could be
                // refused: a record without them is not taken back.
                guard record.ownerUid != nil else { throw ShmBusError.badSegment("the kept record of \(name) names no owner") }
                _ = try ReadPolicy(wire: record.readers ?? [])
                // Never dropped for the descriptor budget: the data would be lost.
                let file = try InspectedSegment(entry.fd, expectedChannel: record.channel ?? "", mayExceedBudget: true)
                guard file.name == name else { throw ShmBusError.badSegment("the kept record names \(name), the segment is \(file.name)") }
                inspected.append((entry, file))
            } catch {
                logger.error("dropping a kept segment that no longer validates", metadata: ["segment": "\(name)", "error": "\(error)"])
                keeper?.drop(name)
                dropped += 1
            }
        }
        // The owners still connected, with the Unix user the bus says they are.
        var ownerUIDs: [String: UInt32] = [:]
        for owner in Set(inspected.compactMap { $0.0.record.owner }.filter { !$0.isEmpty }) {
            guard await connected(owner), let uid = try? await connection?.unixUser(of: owner) else { continue }
            ownerUIDs[owner] = uid
        }
        let channelOf = Dictionary(inspected.map { ($0.1.name, $0.1.channel) }, uniquingKeysWith: { a, _ in a })
        // Only a segment of the same channel retires the one it names, as at registration.
        let successors = Dictionary(
            inspected.compactMap { entry, file in
                entry.record.replaces.flatMap { channelOf[$0] == file.channel ? ($0, file.name) : nil }
            }, uniquingKeysWith: { a, _ in a })
        let now = Date().timeIntervalSince1970
        var byChannel: [String: [String]] = [:]
        for (entry, file) in inspected {
            let record = entry.record
            let owner = record.owner.flatMap { ownerUIDs[$0] != nil ? $0 : nil }
            let ttl = record.ttl.map { Duration.seconds(Int64(clamping: $0)) }
            // A doorbell is checked as at registration: subscribers are handed it.
            let doorbell = record.doorbell.flatMap { (try? InspectedSegment.checkDoorbell($0)) != nil ? $0 : nil }
            let holder = ChannelOwner(uid: owner.flatMap { ownerUIDs[$0] } ?? record.ownerUid ?? 0, appID: record.ownerApp)
            let readers = (try? ReadPolicy(wire: record.readers ?? [])) ?? .ownerOnly
            var segment = Segment(
                name: file.name, channel: file.channel, owner: owner, holder: holder, readers: readers, file: file,
                doorbell: owner == nil ? nil : doorbell, persistent: true, ttl: ttl,
                createdMicroseconds: record.created ?? UInt64(now * 1_000_000),
                committedAtRegistration: file.liveState().committedBytes, replaces: record.replaces ?? "")
            if let successor = successors[file.name] {
                segment.state = .retired
                segment.replacedBy = successor
            }
            // An owner that left while no registry ran leaves now, for the ttl too;
            // the time left of one that left before is kept across the restart.
            let leftMeanwhile = owner == nil && !(record.owner ?? "").isEmpty
            if owner == nil, let ttl {
                let expires = record.expires ?? UInt64((now + ttl.inSeconds) * 1_000_000)
                let left = Double(Int64(clamping: expires) - Int64(now * 1_000_000)) / 1_000_000
                segment.expiresMicroseconds = expires
                segment.expiresAt = .now + .seconds(max(0, left))
                lowerNextExpiry(segment.expiresAt!)
                if leftMeanwhile || record.expires == nil { keeper?.ownerLeft(file.name, expires: expires) }
            } else if leftMeanwhile {
                keeper?.ownerLeft(file.name, expires: 0)
            }
            segments[file.name] = segment
            account(segment, 1)
            byChannel[file.channel, default: []].append(file.name)
        }
        for (name, members) in byChannel {
            dropped += adoptChannel(name, members)
        }
        let adopted = byChannel.values.joined().filter { segments[$0] != nil }
        for name in adopted { await exportSegment(name) }
        for name in byChannel.keys where channels[name] != nil { await exportChannel(name) }
        // An owner that left while this was asking the bus had its departure handled
        // before its segments were here, which left them an owner nobody sees leave
        // (no ttl, a channel nobody else may continue). Asked again now that they are.
        for owner in ownerUIDs.keys {
            if await !connected(owner) { await ownerLeft(owner) }
        }
        return (adopted.count, dropped)
    }

    /// Makes channel `name` of adopted segments: the newest active one is current; it
    /// and the one it replaced stay, older ones go.
    private func adoptChannel(_ name: String, _ members: [String]) -> Int {
        let ordered = members.compactMap { segments[$0] }.sorted { $0.file.generation < $1.file.generation }
        guard let current = ordered.last(where: { $0.state == .active }) ?? ordered.last else { return 0 }
        let keep: Set<String> = [current.name, current.replaces]
        var dropped = 0
        for segment in ordered where !keep.contains(segment.name) {
            segments[segment.name] = nil
            account(segment, -1)
            keeper?.drop(segment.name)
            dropped += 1
        }
        storeChannel(
            Channel(
                name: name, owner: current.owner, holder: current.holder, segments: ordered.map(\.name).filter(keep.contains),
                current: current.name),
            as: name)
        return dropped
    }
}
