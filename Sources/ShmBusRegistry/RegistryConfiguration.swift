/// Limits and timings of a registry.
public struct RegistryConfiguration: Sendable {
    /// Segments one connection may have registered at once.
    public var maxSegmentsPerConnection = 256
    /// Total capacity, in bytes, of the segments one connection may have registered.
    public var maxBytesPerConnection: UInt64 = 64 << 30
    /// Segments in the whole registry, persistent ones of departed owners included.
    public var maxSegments = 16_384
    /// How often expired persistent segments are swept.
    public var sweepInterval: Duration = .milliseconds(250)
    /// How often persistent segments of departed owners are read to see whether any
    /// chunk in them is still live (those with none are removed).
    public var emptinessCheckInterval: Duration = .seconds(2)

    /// Whether persistent segments are handed to a keeper (``KeeperService``), so that
    /// they outlive this process. Without one they live as long as the registry.
    public var keepsPersistentSegments = true
    /// How to start a keeper when none is on the bus and none is D-Bus activatable
    /// (`shmbus daemon` passes `shmbus keeper --bus …`); nil to use only those.
    public var keeperCommand: [String]?

    public init() {}
}
