import DBus
import Foundation
import Logging
import ShmBusProtocol

/// What the keeper holds: one descriptor and record per segment, by name.
actor KeptSegments {
    /// (The name order below is made again only when a name comes or goes: records
    /// change with every departure.)
    private var kept: [String: KeptSegment] = [:]
    /// The segments of each owner still connected, as the records name them: a
    /// departure the keeper sees itself (``departed(_:at:)``) touches only those.
    private var byOwner: [String: Set<String>] = [:]
    /// The owners seen leaving lately, and when (µs since the epoch), oldest first: a
    /// record that arrives after its owner left (a Keep still on its way, a registry
    /// handing everything again from what it knew before the departure) is marked gone
    /// as it comes. Bounded: the registry's OwnerLeft covers what falls out.
    private var departedRecently: [String: UInt64] = [:]
    private var departedOrder: [String] = []
    static let departuresRemembered = 4_096
    /// The names in order, made again after a change: a registry takes everything
    /// back in batches, and sorting for each batch would make that quadratic.
    private var order: [String]?
    /// When the keeper last held nothing, nil while it holds something.
    private var emptySince: ContinuousClock.Instant? = .now
    /// Set once the keeper has decided to exit: calls that would hand it segments fail
    /// from then on (the registry starts a new keeper).
    private var closing = false
    private let logger: Logger

    /// The most segments one keeper holds: the registry's own limit is 16,384; the
    /// margin is for records a registry could not drop before it died.
    static let limit = 65_536
    /// The most descriptors one message carries: what the system bus passes by default
    /// (a bus drops the connection of a peer that sends more, which for the keeper
    /// would lose everything it holds).
    static let descriptorsPerMessage = 16

    /// This keeper's limit: ``limit``, or fewer when its descriptor limit would be
    /// reached first. A message whose descriptors cannot be received costs the keeper its
    /// connection, and with it every segment, so the quota must refuse before that.
    let capacity: Int

    init(logger: Logger, capacity: Int = KeptSegments.limit) {
        self.logger = logger
        self.capacity = min(capacity, Self.limit)
    }

    var count: Int { kept.count }

    func keep(_ segment: KeptSegment, name: String, channel: String) throws(ShmBusError) {
        guard !closing else { throw ShmBusError(.registryUnavailable, "the keeper is exiting; start a new one") }
        guard kept[name] != nil || kept.count < capacity else {
            throw .quotaExceeded("the keeper holds \(kept.count) segments, its limit")
        }
        forgetOwner(of: name)
        if kept[name] == nil { order = nil }
        var segment = segment
        if let owner = segment.record.owner, let at = departedRecently[owner] { Self.markGone(&segment.record, at: at) }
        kept[name] = segment
        if let owner = segment.record.owner, !owner.isEmpty { byOwner[owner, default: []].insert(name) }
        emptySince = nil
        logger.debug("keeping", metadata: ["segment": "\(name)", "channel": "\(channel)"])
    }

    /// The registry says the owner left, and when the segment expires (0: no ttl). Its
    /// word is final: it is the expiry the registry serves.
    func ownerLeft(_ name: String, expires: UInt64) throws(ShmBusError) {
        guard var segment = kept[name] else { throw .notFound("the keeper holds no segment '\(name)'") }
        forgetOwner(of: name)
        segment.record.owner = ""
        if expires != 0 { segment.record.expires = expires }
        kept[name] = segment
    }

    /// The bus says `owner` left, `now` microseconds into the epoch. The registry says
    /// so too (``ownerLeft(_:expires:)``), but a registry killed right after it saw the
    /// departure may never have told; a registry started later would then take the
    /// owner to have left while no registry ran, and give a ttl the whole of its time
    /// again. Noted here from the bus itself, the ttl counts from the departure
    /// whatever happens to the registry.
    func departed(_ owner: String, at now: UInt64) {
        if departedRecently.updateValue(now, forKey: owner) == nil { departedOrder.append(owner) }
        if departedOrder.count > Self.departuresRemembered {
            departedRecently[departedOrder.removeFirst()] = nil
        }
        guard let names = byOwner.removeValue(forKey: owner) else { return }
        for name in names {
            guard var segment = kept[name], segment.record.owner == owner else { continue }
            Self.markGone(&segment.record, at: now)
            kept[name] = segment
        }
    }

    /// The owner left at `at`: the record says so, and its ttl runs from then.
    private static func markGone(_ record: inout Keeper1.Record, at: UInt64) {
        record.owner = ""
        if record.expires == nil, let ttl = record.ttl {
            record.expires = at + min(ttl, Keeper1.Record.maximumTTL) * 1_000_000
        }
    }

    private func forgetOwner(of name: String) {
        guard let owner = kept[name]?.record.owner, !owner.isEmpty else { return }
        byOwner[owner]?.remove(name)
        if byOwner[owner]?.isEmpty == true { byOwner[owner] = nil }
    }

    func drop(_ name: String) {
        forgetOwner(of: name)
        guard kept.removeValue(forKey: name) != nil else { return }
        order = nil
        logger.debug("dropped", metadata: ["segment": "\(name)"])
        if kept.isEmpty { emptySince = .now }
    }

    /// Up to `count` segments after `after`, in name order, with at most
    /// ``descriptorsPerMessage`` descriptors in all: a segment with a doorbell carries
    /// two, and a reply over the bus's limit would cost the keeper its connection.
    func hand(after: String, count: Int) -> [KeptSegment] {
        let names = order ?? kept.keys.sorted()
        order = names
        var low = 0
        var high = names.count
        while low < high {
            let middle = (low + high) / 2
            if names[middle] <= after { low = middle + 1 } else { high = middle }
        }
        var out: [KeptSegment] = []
        var descriptors = 0
        for name in names[low...] {
            guard out.count < count, let segment = kept[name] else { break }
            let carried = segment.record.doorbell == nil ? 1 : 2
            guard descriptors + carried <= Self.descriptorsPerMessage else { break }
            descriptors += carried
            out.append(segment)
        }
        return out
    }

    /// Whether the keeper has held nothing for `duration`.
    func idle(for duration: Duration) -> Bool {
        emptySince.map { ContinuousClock.now - $0 >= duration } ?? false
    }

    /// Marks the keeper as exiting if it still holds nothing; returns whether it does.
    func close() -> Bool {
        guard kept.isEmpty else { return false }
        closing = true
        return true
    }
}
