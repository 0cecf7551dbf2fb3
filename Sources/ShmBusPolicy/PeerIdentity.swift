/// Who a caller is, as far as ShmBus's rules go: its Unix user and groups (from the
/// bus) and, for a sandboxed app, its app ID (from the sandbox's own metadata, found
/// through the caller's process). Never from anything the caller says.
public struct PeerIdentity: Sendable, Hashable, CustomStringConvertible {
    public var uid: UInt32
    /// Every group the bus reports (primary and supplementary); empty when it reports
    /// none, and then group grants match nothing.
    public var groups: Set<UInt32>
    /// The Flatpak app ID of a sandboxed caller; nil for a process that is not in a
    /// sandbox ShmBus recognises.
    public var appID: String?

    public init(uid: UInt32, groups: Set<UInt32> = [], appID: String? = nil) {
        self.uid = uid
        self.groups = groups
        self.appID = appID
    }

    /// Root outside any sandbox: trusted with everything (it could read any process's
    /// memory anyway).
    public var isRoot: Bool { uid == 0 && appID == nil }

    public var isSandboxed: Bool { appID != nil }

    public var description: String {
        appID.map { "sandboxed app \($0) of user \(uid)" } ?? "user \(uid)"
    }
}

/// Whose a channel is: the Unix user of the connection that created it and, when that
/// connection was a sandboxed app, its app ID. Kept for as long as the channel holds a
/// segment, live or persistent, and across registry restarts.
public struct ChannelOwner: Sendable, Hashable, CustomStringConvertible {
    public var uid: UInt32
    public var appID: String?

    public init(uid: UInt32, appID: String? = nil) {
        self.uid = uid
        self.appID = appID
    }

    public init(_ identity: PeerIdentity) {
        self.init(uid: identity.uid, appID: identity.appID)
    }

    public var description: String {
        appID.map { "app \($0) of user \(uid)" } ?? "user \(uid)"
    }
}
