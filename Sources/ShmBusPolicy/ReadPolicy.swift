import ShmBusProtocol

/// Who may read a channel besides its own Unix user and root: the publisher's grants,
/// sent as the `readers` option of `RegisterSegment` (docs/SECURITY.md).
///
/// On the wire each grant is one string: `user:UID`, `group:GID`, `app:APP_ID` (a
/// Flatpak app ID, or `app:*` for every sandboxed app), or `any` (every Unix user on
/// the bus, not sandboxed apps). Numbers, not names, so that the registry never has
/// to look a name up and the grant means the same on every host; the command line and
/// ``ReadPolicy/Grant/user(named:)`` resolve names.
public struct ReadPolicy: Sendable, Hashable, CustomStringConvertible {
    public enum Grant: Sendable, Hashable, CustomStringConvertible {
        case user(UInt32)
        case group(UInt32)
        /// A sandboxed app by ID; `"*"` for every one.
        case app(String)
        /// Every Unix user (sandboxed apps need an `app` grant).
        case any

        public var description: String {
            switch self {
            case .user(let uid): "user:\(uid)"
            case .group(let gid): "group:\(gid)"
            case .app(let id): "app:\(id)"
            case .any: "any"
            }
        }

        /// Parses one wire grant.
        public init(parsing text: String) throws(ShmBusError) {
            if text == "any" {
                self = .any
                return
            }
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw .invalidArgument("reader grant '\(text.prefix(80))' is not user:UID, group:GID, app:APP_ID or any")
            }
            let value = String(parts[1])
            switch parts[0] {
            case "user":
                guard let uid = UInt32(value) else { throw .invalidArgument("reader grant '\(text.prefix(80))': user IDs are numbers") }
                self = .user(uid)
            case "group":
                guard let gid = UInt32(value) else { throw .invalidArgument("reader grant '\(text.prefix(80))': group IDs are numbers") }
                self = .group(gid)
            case "app":
                guard value == "*" || FlatpakInfo.isValidAppID(value) else {
                    throw .invalidArgument("reader grant '\(text.prefix(80))': not a valid app ID (a D-Bus-style name such as org.example.App)")
                }
                self = .app(value)
            default:
                throw .invalidArgument("reader grant '\(text.prefix(80))' is not user:UID, group:GID, app:APP_ID or any")
            }
        }
    }

    /// At most this many grants: a policy is a short list, and each read checks it.
    public static let maxGrants = 64

    public var grants: [Grant]

    /// The default: the channel's own Unix user and root only.
    public static let ownerOnly = ReadPolicy(grants: [])

    public init(grants: [Grant]) {
        var seen = Set<Grant>()
        self.grants = grants.filter { seen.insert($0).inserted }
    }

    /// Parses the `readers` option.
    public init(wire: [String]) throws(ShmBusError) {
        guard wire.count <= Self.maxGrants else {
            throw .invalidArgument("option 'readers' has \(wire.count) grants; at most \(Self.maxGrants)")
        }
        var grants: [Grant] = []
        for text in wire { grants.append(try Grant(parsing: text)) }
        self.init(grants: grants)
    }

    /// The `readers` option: nil for the default, so a registration without grants
    /// looks as it did before read policies existed.
    public var wire: [String]? { grants.isEmpty ? nil : grants.map(\.description) }

    public var description: String {
        grants.isEmpty ? "its own user and root only" : "its own user, root and " + grants.map(\.description).joined(separator: ", ")
    }
}
