import DBus
import NATS
import SharedSegments
import ShmBus

/// What one `shmbus bridge` does: which channels it exports into which stream, which it
/// imports from it, and the limits of docs/BRIDGE.md.
public struct BridgeConfiguration: Sendable {
    /// Names the bridge's durable consumers (`<name>-<hash of the filter>`): a bridge
    /// started again with the same name continues where it stopped.
    public var name: String
    public var stream: String
    public var nats: NATSConnection.Options
    public var bus: DBusConnection.Bus
    /// Channel names, and prefixes ending in `/`.
    public var exports: [String] = []
    public var imports: [String] = []

    /// Payload bytes per message at most (lowered to fit the server's `max_payload`).
    public var partSize = 1 << 20
    /// The stream's settings, when this bridge exports (it creates or updates it).
    public var replicas = 1
    public var maxAge: Duration?
    public var maxBytes: Int64?
    public var duplicateWindow: Duration = .seconds(120)
    /// Where a new export starts when the stream has nothing of the channel yet.
    public var exportFromOldest = true

    /// The import's consumers.
    public var ackWait: Duration = .seconds(60)
    public var maxAckPending: Int64 = 65536
    /// Start a new consumer at the stream's first message instead of the newest chunk
    /// of each key.
    public var importAll = false
    /// Imported channels: their segments' capacity, how long they outlive a stopped
    /// bridge, and who besides the bridge's user may read them.
    public var capacity: UInt64 = 64 << 20
    public var hold: Duration = .seconds(300)
    public var readers: ReadPolicy = .ownerOnly

    public init(name: String, stream: String, nats: NATSConnection.Options, bus: DBusConnection.Bus) {
        self.name = name
        self.stream = stream
        self.nats = nats
        self.bus = bus
    }

    /// Checks names and patterns before anything starts.
    func validated() throws(BridgeError) -> SubjectLayout {
        let layout = try SubjectLayout(stream: stream)
        guard !name.isEmpty, name.utf8.allSatisfy(SubjectLayout.isPlain), name.utf8.count <= 64 else {
            throw .invalidArgument("bridge name '\(name.prefix(80))': 1 to 64 bytes of A-Z a-z 0-9 _ - are allowed")
        }
        guard !exports.isEmpty || !imports.isEmpty else { throw .invalidArgument("nothing to export or import") }
        for pattern in exports + imports {
            let channel = pattern.hasSuffix("/") ? String(pattern.dropLast()) : pattern
            if let problem = ChannelName.problem(with: channel) {
                throw .invalidArgument("'\(pattern)' is not a channel name or a prefix ending in '/': \(problem)")
            }
        }
        // One channel imported through two consumers would have two writers.
        for (index, a) in imports.enumerated() {
            for b in imports[(index + 1)...] where Self.overlap(a, b) {
                throw .invalidArgument("imports '\(a)' and '\(b)' overlap: a channel would be imported twice")
            }
        }
        guard partSize >= 1024 else { throw .invalidArgument("part size \(partSize) is below 1024 bytes") }
        return layout
    }

    static func matches(_ pattern: String, channel: String) -> Bool {
        pattern.hasSuffix("/") ? channel.hasPrefix(pattern) : channel == pattern
    }

    static func overlap(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        if a.hasSuffix("/"), matches(a, channel: b.hasSuffix("/") ? String(b.dropLast()) + "/x" : b) { return true }
        if b.hasSuffix("/"), matches(b, channel: a.hasSuffix("/") ? String(a.dropLast()) + "/x" : a) { return true }
        return false
    }
}
