import ShmBusSystem

/// What each connected owner holds: the segments it registered (``Segment/owner``) and
/// the channels it owns (``Channel/owner``), kept as they change so that a departure
/// costs what the departing connection held, not the registry's size. Every connection
/// that leaves the bus is a departure, most of them holding nothing (a `shmbus cat`, a
/// subscriber); a walk over every segment for each took the registry actor 3 ms at
/// 10,000 segments, during which no registration was answered (docs/RELIABILITY.md,
/// "Registry scale").
///
/// The index follows the two owners exactly: a segment's owner is set when it is
/// stored and only ever cleared by ``ownerLeft(_:)``, which takes the connection's
/// whole entry; a channel's owner changes only through ``storeChannel(_:as:)`` or
/// there.
extension SegmentRegistry {
    struct Holdings {
        var segments: Set<String> = []
        var channels: Set<String> = []

        var isEmpty: Bool { segments.isEmpty && channels.isEmpty }
    }

    /// Notes `segment` in (`sign` 1) or out (-1) of its owner's holdings; called by
    /// ``account(_:_:)``, as every segment stored or dropped is.
    func noteHolding(_ segment: Segment, _ sign: Int) {
        guard let owner = segment.owner else { return }
        if sign > 0 {
            holdings[owner, default: Holdings()].segments.insert(segment.name)
        } else if holdings[owner] != nil {
            // A departed connection's entry went when it left; none is made again here.
            holdings[owner]?.segments.remove(segment.name)
            if holdings[owner]?.isEmpty == true { holdings[owner] = nil }
        }
    }

    /// Stores `channel` as channel `name` (nil removes it), moving it from its previous
    /// owner's holdings to its new owner's.
    func storeChannel(_ channel: Channel?, as name: String) {
        let previous = channels[name]?.owner
        if let previous, previous != channel?.owner, holdings[previous] != nil {
            holdings[previous]?.channels.remove(name)
            if holdings[previous]?.isEmpty == true { holdings[previous] = nil }
        }
        if let owner = channel?.owner { holdings[owner, default: Holdings()].channels.insert(name) }
        channels[name] = channel
    }

    /// Takes `connection`'s holdings out of the index: it left the bus.
    func takeHoldings(of connection: String) -> Holdings {
        defer { holdings.shrinkIfSparse() }
        return holdings.removeValue(forKey: connection) ?? Holdings()
    }
}
