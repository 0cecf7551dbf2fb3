import DBus
import ShmBusProtocol

/// Limits and timings of a registry.
public struct RegistryConfiguration: Sendable {
    /// Segments one connection may have registered at once.
    public var maxSegmentsPerConnection = 256
    /// Total capacity, in bytes, of the segments one connection may have registered.
    public var maxBytesPerConnection: UInt64 = 64 << 30
    /// Segments in the whole registry, persistent ones of departed owners included.
    public var maxSegments = 16_384
    /// Segments one Unix user may hold across all its connections, persistent ones of
    /// connections that left included: a quarter of the registry, so that no user alone
    /// reaches the registry's limit.
    public var maxSegmentsPerUser = 4_096
    /// Total capacity one Unix user may hold, the same way.
    public var maxBytesPerUser: UInt64 = 256 << 30
    /// Total capacity of one Unix user's persistent segments, live or left behind: the
    /// bound on what a user with no connection can leave in the registry.
    public var maxPersistentBytesPerUser: UInt64 = 16 << 30
    /// Segments and bytes one sandboxed app (by app ID) may hold, within its user's.
    public var maxSegmentsPerApp = 1_024
    public var maxBytesPerApp: UInt64 = 64 << 30
    /// How often expired persistent segments are swept.
    public var sweepInterval: Duration = .milliseconds(250)
    /// How often persistent segments of departed owners are read to see whether any
    /// chunk in them is still live (those with none are removed).
    public var emptinessCheckInterval: Duration = .seconds(2)

    /// How often the malloc arenas are looked at; when more than
    /// `memoryTrimThreshold` bytes lie free in them, they are given back to the kernel
    /// (`malloc_trim`). nil never trims.
    public var memoryTrimInterval: Duration? = .seconds(1)
    public var memoryTrimThreshold = 4 << 20

    /// Whether persistent segments are handed to a keeper (``KeeperService``), so that
    /// they outlive this process. Without one they live as long as the registry.
    public var keepsPersistentSegments = true
    /// How to start a keeper when none is on the bus and none is D-Bus activatable
    /// (`shmbus daemon` passes `shmbus keeper --bus …`); nil to use only those.
    public var keeperCommand: [String]?

    /// A call from a client with nothing else queued or running here (a light client,
    /// which the scheduling serves ahead of busy ones) that takes longer than this in
    /// the registry, from the read to the reply, is logged at warning level with where
    /// its time went (``DBus/DBusConnection/ServedCall``); nil logs none. Every call's
    /// phases are in the metrics either way.
    public var slowCallThreshold: Duration? = .milliseconds(100)

    /// How the daemon's bus connection runs the registry's handlers: every client's
    /// calls in a queue of their own, served in turn, few at a time, and none started
    /// while the bus lags behind reading the replies (see
    /// ``DBus/DBusConnection/CallScheduling``). A bystander's `Lookup` waits for at most
    /// one call of each other busy client and `total` running ones.
    ///
    /// A call refused because descriptors would run out is `QuotaExceeded`, as a
    /// registration past the descriptor budget is.
    public var callScheduling: DBusConnection.CallScheduling = {
        var scheduling = DBusConnection.CallScheduling(
            perSender: 4, total: 8, queuedUnixFDs: 128, outgoingBytes: 16 << 10, outgoingUnixFDs: 64)
        scheduling.refusalErrorName = ShmBusError(.quotaExceeded, "").dbusName
        return scheduling
    }()

    public init() {}

    /// Descriptors a registry on a connection scheduled so keeps for everything but
    /// its segments: the process's own (stdio, the bus socket, eventfds, the keeper's
    /// connection: 64), one message being read (64), descriptors in calls waiting for a
    /// handler, four per running handler (a registration's segment and doorbell as
    /// received, its read-only reopening, a persistent one's copy for the keeper) and
    /// those in replies not yet written.
    static func descriptorReserve(for scheduling: DBusConnection.CallScheduling) -> Int {
        64 + 64 + scheduling.queuedUnixFDs + 4 * scheduling.total + scheduling.outgoingUnixFDs
    }
}
