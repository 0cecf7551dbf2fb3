import ShmBusProtocol

/// The rules of docs/SECURITY.md, as pure functions of identities and policies: the
/// registry and publishers supply who asks and what the channel says; these decide.
/// Kept apart from the mechanism (bus calls, the registry's state) so that each rule
/// is in one place and reads as the document says it.
public enum AccessRules {
    /// The first component of channel names reserved to root and the registry's own
    /// Unix user, for channels other users must be able to trust by name.
    public static let reservedPrefix = "system/"

    /// Whether `reader` may read a channel of `owner` with `policy`; the refusal names
    /// the rule.
    ///
    /// Outside a sandbox: root, the owner's user, and whoever the policy grants by user,
    /// group or `any`. A sandboxed app: only a channel its own app created (for the same
    /// user), or one that grants its app ID (or `app:*`) *and* would be readable by its
    /// Unix user without the sandbox, so an app grant never reaches past the users the
    /// publisher chose.
    public static func checkRead(
        _ reader: PeerIdentity, channel: String, owner: ChannelOwner, policy: ReadPolicy
    ) throws(ShmBusError) {
        if let app = reader.appID {
            if owner.appID == app, owner.uid == reader.uid { return }
            let granted = policy.grants.contains(.app(app)) || policy.grants.contains(.app("*"))
            if granted, userMayRead(reader, owner: owner, policy: policy) { return }
            throw .accessDenied(
                "channel '\(channel)' is not readable by \(reader): a sandboxed app reads only channels that grant app:\(app)"
                    + (granted ? " and its Unix user" : "") + " (the channel's readers: \(policy))")
        }
        if userMayRead(reader, owner: owner, policy: policy) { return }
        throw .accessDenied("channel '\(channel)' of \(owner) is readable by \(policy); \(reader) is not among them")
    }

    private static func userMayRead(_ reader: PeerIdentity, owner: ChannelOwner, policy: ReadPolicy) -> Bool {
        if reader.uid == 0 || reader.uid == owner.uid { return true }
        for grant in policy.grants {
            switch grant {
            case .any: return true
            case .user(let uid) where uid == reader.uid: return true
            case .group(let gid) where reader.groups.contains(gid): return true
            default: continue
            }
        }
        return false
    }

    /// Whether `caller` may register on, continue, or remove the departed segments of a
    /// channel `owner` holds (nil: nobody holds it). A channel belongs to its Unix user
    /// for as long as it holds any segment; a channel a sandboxed app created belongs to
    /// that app too, and an app never touches a channel it did not create. The user's
    /// own unsandboxed processes may take over their apps' channels.
    public static func checkOwnership(
        _ caller: PeerIdentity, channel: String, owner: ChannelOwner?, registryUser: UInt32, action: String
    ) throws(ShmBusError) {
        if channel.hasPrefix(reservedPrefix), !(caller.appID == nil && (caller.uid == 0 || caller.uid == registryUser)) {
            throw .accessDenied(
                "channel names under '\(reservedPrefix)' are reserved to root and the registry's user (\(registryUser)); \(caller) may not \(action) '\(channel)'")
        }
        guard let owner else { return }
        guard caller.uid == owner.uid else {
            throw .accessDenied("channel '\(channel)' belongs to \(owner) while it holds any segment; \(caller) may not \(action) it")
        }
        if let app = caller.appID, owner.appID != app {
            throw .accessDenied(
                "channel '\(channel)' was not created by \(caller); a sandboxed app may not \(action) a channel it did not create")
        }
    }
}
