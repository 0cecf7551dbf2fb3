import ShmBusPolicy
import ShmBusProtocol

/// Quotas: what each connection, each Unix user and each sandboxed app holds, counted
/// as segments come and go so that a registration costs the same however full the
/// registry is. Users' and apps' counts include persistent segments whose publishers
/// left: they are still that user's memory.
extension SegmentRegistry {
    struct Usage: Sendable {
        var segments = 0
        var bytes: UInt64 = 0
        var persistentBytes: UInt64 = 0

        mutating func add(_ segment: Segment, _ sign: Int) {
            segments += sign
            bytes = sign > 0 ? bytes + segment.file.capacity : bytes - min(bytes, segment.file.capacity)
            if segment.persistent {
                persistentBytes = sign > 0 ? persistentBytes + segment.file.capacity : persistentBytes - min(persistentBytes, segment.file.capacity)
            }
        }
    }

    /// Counts `segment` in (`sign` 1) or out (-1) of its connection's, user's and app's
    /// usage, and the registry's (and in or out of its owner's holdings).
    func account(_ segment: Segment, _ sign: Int) {
        // A departed connection's count was dropped when it left.
        if let owner = segment.owner, sign > 0 || connectionUsage[owner] != nil {
            connectionUsage[owner, default: Usage()].add(segment, sign)
            if connectionUsage[owner].map({ $0.segments <= 0 }) == true { connectionUsage[owner] = nil }
        }
        registryUsage.add(segment, sign)
        noteHolding(segment, sign)
        userUsage[segment.holder.uid, default: Usage()].add(segment, sign)
        if userUsage[segment.holder.uid].map({ $0.segments <= 0 }) == true { userUsage[segment.holder.uid] = nil }
        if let app = segment.holder.appID {
            appUsage[app, default: Usage()].add(segment, sign)
            if appUsage[app].map({ $0.segments <= 0 }) == true { appUsage[app] = nil }
        }
    }

    /// The connection's segments stop counting for it when it leaves (they count for
    /// their user still).
    func accountDeparture(of connection: String) {
        connectionUsage[connection] = nil
    }

    /// Refuses a registration that would take its connection, its Unix user, its app or
    /// the registry past a limit, naming the limit.
    func checkQuotas(_ request: Registration) throws(ShmBusError) {
        let size = request.file.capacity
        let c = configuration
        let connection = connectionUsage[request.sender] ?? Usage()
        guard connection.segments < c.maxSegmentsPerConnection else {
            throw .quotaExceeded(
                "\(request.sender) already has \(connection.segments) segments registered (limit \(c.maxSegmentsPerConnection) per connection); unregister some first")
        }
        guard connection.bytes + size <= c.maxBytesPerConnection else {
            throw .quotaExceeded(
                "registering \(size) bytes would bring \(request.sender) to \(connection.bytes + size) bytes (limit \(c.maxBytesPerConnection) per connection)")
        }
        let uid = request.identity.uid
        let user = userUsage[uid] ?? Usage()
        guard user.segments < c.maxSegmentsPerUser else {
            throw .quotaExceeded(
                "user \(uid) holds \(user.segments) segments across its connections, persistent ones included (limit \(c.maxSegmentsPerUser) per user)")
        }
        guard user.bytes + size <= c.maxBytesPerUser else {
            throw .quotaExceeded(
                "registering \(size) bytes would bring user \(uid) to \(user.bytes + size) bytes (limit \(c.maxBytesPerUser) per user)")
        }
        if request.persistent, user.persistentBytes + size > c.maxPersistentBytesPerUser {
            throw .quotaExceeded(
                "user \(uid) holds \(user.persistentBytes) bytes of persistent segments; \(size) more would pass the limit of \(c.maxPersistentBytesPerUser) (unregister some, or give them a ttl)")
        }
        if let app = request.identity.appID {
            let usage = appUsage[app] ?? Usage()
            guard usage.segments < c.maxSegmentsPerApp, usage.bytes + size <= c.maxBytesPerApp else {
                throw .quotaExceeded(
                    "sandboxed app \(app) holds \(usage.segments) segments and \(usage.bytes) bytes (limits \(c.maxSegmentsPerApp) and \(c.maxBytesPerApp) per app)")
            }
        }
        guard segments.count < c.maxSegments else {
            throw .quotaExceeded("the registry holds \(segments.count) segments, its limit")
        }
    }
}
