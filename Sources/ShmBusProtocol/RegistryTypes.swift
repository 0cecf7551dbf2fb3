import DBus

/// One channel, as `ListChannels` reports it (`(sssttt)`).
public struct ChannelInfo: DBusCodable, Hashable, Codable {
    public var name: String
    /// The owner's unique bus name; empty once the owner has left the bus.
    public var owner: String
    /// The segment new chunks go to; empty when the channel has none.
    public var currentSegment: String
    public var generation: UInt64
    public var segmentCount: UInt64
    /// Total capacity of the channel's segments, in bytes.
    public var bytes: UInt64

    public init(name: String, owner: String, currentSegment: String, generation: UInt64, segmentCount: UInt64, bytes: UInt64) {
        self.name = name
        self.owner = owner
        self.currentSegment = currentSegment
        self.generation = generation
        self.segmentCount = segmentCount
        self.bytes = bytes
    }

    public static var dbusType: DBusType { .structure([.string, .string, .string, .uint64, .uint64, .uint64]) }

    public var dbusValue: DBusValue {
        .structure([.string(name), .string(owner), .string(currentSegment), .uint64(generation), .uint64(segmentCount), .uint64(bytes)])
    }

    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let f) = dbusValue, f.count == 6 else { throw Self.typeMismatch(dbusValue) }
        self.init(
            name: try String(dbusValue: f[0]), owner: try String(dbusValue: f[1]), currentSegment: try String(dbusValue: f[2]),
            generation: try UInt64(dbusValue: f[3]), segmentCount: try UInt64(dbusValue: f[4]), bytes: try UInt64(dbusValue: f[5]))
    }
}

/// One segment, as `ListSegments` reports it (`(ssottttsbt)`).
public struct SegmentInfo: DBusCodable, Hashable, Codable {
    /// The segment's name: 32 hex digits.
    public var name: String
    public var channel: String
    public var path: ObjectPath
    public var generation: UInt64
    public var capacity: UInt64
    public var committedBytes: UInt64
    /// Live (not obsolete) chunks.
    public var chunkCount: UInt64
    /// `active` or `retired`.
    public var state: String
    public var persistent: Bool
    /// Creation time, microseconds since the Unix epoch.
    public var createdMicroseconds: UInt64

    public init(
        name: String, channel: String, path: ObjectPath, generation: UInt64, capacity: UInt64, committedBytes: UInt64,
        chunkCount: UInt64, state: String, persistent: Bool, createdMicroseconds: UInt64
    ) {
        self.name = name
        self.channel = channel
        self.path = path
        self.generation = generation
        self.capacity = capacity
        self.committedBytes = committedBytes
        self.chunkCount = chunkCount
        self.state = state
        self.persistent = persistent
        self.createdMicroseconds = createdMicroseconds
    }

    public static var dbusType: DBusType {
        .structure([.string, .string, .objectPath, .uint64, .uint64, .uint64, .uint64, .string, .boolean, .uint64])
    }

    public var dbusValue: DBusValue {
        .structure([
            .string(name), .string(channel), .objectPath(path), .uint64(generation), .uint64(capacity),
            .uint64(committedBytes), .uint64(chunkCount), .string(state), .boolean(persistent), .uint64(createdMicroseconds),
        ])
    }

    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let f) = dbusValue, f.count == 10 else { throw Self.typeMismatch(dbusValue) }
        self.init(
            name: try String(dbusValue: f[0]), channel: try String(dbusValue: f[1]), path: try ObjectPath(dbusValue: f[2]),
            generation: try UInt64(dbusValue: f[3]), capacity: try UInt64(dbusValue: f[4]),
            committedBytes: try UInt64(dbusValue: f[5]), chunkCount: try UInt64(dbusValue: f[6]),
            state: try String(dbusValue: f[7]), persistent: try Bool(dbusValue: f[8]),
            createdMicroseconds: try UInt64(dbusValue: f[9]))
    }
}

/// Where the newest live chunk with a key is (`Lookup`).
public struct LookupResult: Hashable, Sendable, Codable {
    public var segment: String
    /// The payload's byte offset in the segment.
    public var offset: UInt64
    public var length: UInt64
    public var sequence: UInt64

    public init(segment: String, offset: UInt64, length: UInt64, sequence: UInt64) {
        self.segment = segment
        self.offset = offset
        self.length = length
        self.sequence = sequence
    }
}

extension DBusCodable {
    static func typeMismatch(_ value: DBusValue) -> DBusError {
        .invalidArgument("expected a value of type '\(dbusType)', got '\(value.type)'")
    }
}

/// Why a segment left the registry: the `reason` of `SegmentRemoved`.
public enum RemovalReason: String, Sendable, CaseIterable {
    case unregistered
    case ownerExited = "owner-exited"
    case expired
    case replaced
    case daemonShutdown = "daemon-shutdown"
}

/// A registered segment's state: the `State` property and `state` fields.
public enum SegmentState: String, Sendable, CaseIterable {
    /// The channel's current segment, or one a new owner has not replaced.
    case active
    /// Replaced after garbage collection; readers move to its successor.
    case retired
}

/// A connection that holds descriptors of a channel's segments (`ChannelReaders`).
public struct ReaderInfo: DBusCodable, Hashable, Codable {
    /// Its unique bus name.
    public var connection: String
    public var user: UInt32
    public var process: UInt32
    /// Descriptors `OpenSegment` handed it.
    public var descriptors: UInt64

    public init(connection: String, user: UInt32, process: UInt32, descriptors: UInt64) {
        self.connection = connection
        self.user = user
        self.process = process
        self.descriptors = descriptors
    }

    public static var dbusType: DBusType { .structure([.string, .uint32, .uint32, .uint64]) }

    public var dbusValue: DBusValue {
        .structure([.string(connection), .uint32(user), .uint32(process), .uint64(descriptors)])
    }

    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let f) = dbusValue, f.count == 4 else { throw Self.typeMismatch(dbusValue) }
        self.init(
            connection: try String(dbusValue: f[0]), user: try UInt32(dbusValue: f[1]), process: try UInt32(dbusValue: f[2]),
            descriptors: try UInt64(dbusValue: f[3]))
    }
}
