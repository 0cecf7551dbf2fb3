import DBus
import Glibc
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
    /// The process IDs the bus gave with the identities (statistics only: never a rule).
    private var processes: [String: UInt32] = [:]
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
        if credentials.processFD == nil, try await !busProcessIDsNameProcessesHere() {
            throw .accessDenied(
                "the bus names \(sender)'s process by its ID in another PID namespace than this process's (this process runs in a sandbox of its own), so whether the caller is sandboxed cannot be told here; read through the registry")
        }
        let identity = PeerIdentity(
            uid: credentials.unixUserID, groups: Set(credentials.unixGroupIDs ?? []), appID: try FlatpakInfo.appID(of: credentials, otherUsers: otherUsers))
        processes[sender] = credentials.processID
        if known.updateValue(identity, forKey: sender) == nil {
            order.append(sender)
            if order.count > Self.capacity {
                let oldest = order.removeFirst()
                known[oldest] = nil
                processes[oldest] = nil
            }
        }
        return identity
    }

    /// The process ID the bus reported for `sender` when its identity was looked up,
    /// for display (statistics); nil when unknown. Never used for a decision: a process
    /// ID can be reused.
    public func processID(of sender: String) -> UInt32? { processes[sender] }

    /// Whether the `ProcessID`s the bus reports name processes here. They do not when
    /// this process is in another PID namespace than the bus daemon (a publisher in a
    /// sandbox): an ID the bus gives for a caller outside could name nothing here, or a
    /// process of this sandbox, which would lend the caller this sandbox's app ID.
    /// Asked once, with this connection's own ID.
    private var processIDsNameProcessesHere: Bool?

    private func busProcessIDsNameProcessesHere() async throws(ShmBusError) -> Bool {
        if let known = processIDsNameProcessesHere { return known }
        let own: ConnectionCredentials
        do {
            own = try await connection.credentials(of: connection.uniqueName)
        } catch {
            throw .accessDenied("the bus cannot tell which process this one is: \(error)")
        }
        let answer = own.processID == UInt32(bitPattern: getpid())
        processIDsNameProcessesHere = answer
        return answer
    }

    /// `name` left the bus: its identity is not needed again.
    public func forget(_ name: String) {
        processes[name] = nil
        guard known.removeValue(forKey: name) != nil else { return }
        // Linear, but only for connections that called, and the order list is trimmed
        // in batches so that a departure storm stays cheap.
        if order.count > 2 * known.count + 1024 { order.removeAll { known[$0] == nil } }
    }
}
