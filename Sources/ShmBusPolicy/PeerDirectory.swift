import DBus
import ShmBusProtocol

/// The identities of the connections that call, looked up once per connection: the
/// bus's credentials, then the sandbox check through the caller's process.
///
/// A connection's credentials cannot change (the bus takes them when it connects) and
/// unique names are never reused, so an identity is cached until the connection
/// leaves the bus; looking it up early also narrows the window in which a PID could be
/// reused (``FlatpakInfo``). A failed lookup is not cached.
public actor PeerDirectory {
    private let connection: DBusConnection
    private var known: [String: PeerIdentity] = [:]
    private var order: [String] = []
    /// Connections remembered at most; the oldest are looked up again if they call.
    static let capacity = 65_536

    /// What to make of another user's caller this process may not look into.
    private let otherUsers: FlatpakInfo.OtherUsersProcesses

    public init(connection: DBusConnection, otherUsers: FlatpakInfo.OtherUsersProcesses = .refuse) {
        self.connection = connection
        self.otherUsers = otherUsers
    }

    /// The identity of `sender` (a unique name).
    ///
    /// - Throws: ``ShmBusError`` `AccessDenied` when the bus or the process cannot
    ///   tell who it is: rules are never applied to a guess.
    public func identity(of sender: String) async throws(ShmBusError) -> PeerIdentity {
        if let identity = known[sender] { return identity }
        let credentials: ConnectionCredentials
        do {
            credentials = try await connection.credentials(of: sender)
        } catch {
            throw .accessDenied("the bus cannot tell who \(sender) is: \(error)")
        }
        let identity = PeerIdentity(
            uid: credentials.unixUserID, groups: Set(credentials.unixGroupIDs ?? []), appID: try FlatpakInfo.appID(of: credentials, otherUsers: otherUsers))
        if known.updateValue(identity, forKey: sender) == nil {
            order.append(sender)
            if order.count > Self.capacity { known[order.removeFirst()] = nil }
        }
        return identity
    }

    /// `name` left the bus: its identity is not needed again.
    public func forget(_ name: String) {
        guard known.removeValue(forKey: name) != nil else { return }
        // Linear, but only for connections that called, and the order list is trimmed
        // in batches so that a departure storm stays cheap.
        if order.count > 2 * known.count + 1024 { order.removeAll { known[$0] == nil } }
    }
}
