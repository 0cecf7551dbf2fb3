/// What the bus knows of a connection's peer (`GetConnectionCredentials`): the
/// kernel's word, taken when the peer connected, never what the peer says.
public struct ConnectionCredentials: Sendable {
    /// `UnixUserID`: always present on Unix transports.
    public var unixUserID: UInt32
    /// `UnixGroupIDs`: the supplementary groups (and the primary one), when the bus
    /// daemon reports them (dbus-daemon ≥ 1.10, dbus-broker).
    public var unixGroupIDs: [UInt32]?
    /// `ProcessID`, when known. A PID may be reused once the process exits: prefer
    /// ``processFD`` where the daemon offers it.
    public var processID: UInt32?
    /// `ProcessFD`: a pidfd of the peer (dbus-broker, dbus-daemon ≥ 1.15.7), which names
    /// that process and no later one.
    public var processFD: UnixFileDescriptor?
    /// `LinuxSecurityLabel`: the LSM label (AppArmor, SELinux), without its NUL.
    public var securityLabel: [UInt8]?

    public init(
        unixUserID: UInt32, unixGroupIDs: [UInt32]? = nil, processID: UInt32? = nil, processFD: UnixFileDescriptor? = nil,
        securityLabel: [UInt8]? = nil
    ) {
        self.unixUserID = unixUserID
        self.unixGroupIDs = unixGroupIDs
        self.processID = processID
        self.processFD = processFD
        self.securityLabel = securityLabel
    }
}

extension DBusConnection {
    /// The credentials of the connection `name` (`GetConnectionCredentials`). Keys a
    /// daemon does not report are nil; keys this type does not know are ignored.
    ///
    /// - Throws: ``DBusError`` from the bus (`NameHasNoOwner` for a name that left), or
    ///   `InvalidArgs` when the reply lacks `UnixUserID` or has a key of the wrong type.
    public func credentials(of name: String) async throws -> ConnectionCredentials {
        try DBusName.validateBusName(name)
        let values = try await callBus("GetConnectionCredentials", [.string(name)]).decode([String: DBusVariant].self)
        guard let uid = try values.decode("UnixUserID", as: UInt32.self) else {
            throw DBusError.invalidArgument("GetConnectionCredentials of \(name) has no UnixUserID")
        }
        var label = try values.decode("LinuxSecurityLabel", as: [UInt8].self)
        if label?.last == 0 { label?.removeLast() }
        return ConnectionCredentials(
            unixUserID: uid, unixGroupIDs: try values.decode("UnixGroupIDs", as: [UInt32].self),
            processID: try values.decode("ProcessID", as: UInt32.self),
            processFD: try values.decode("ProcessFD", as: UnixFileDescriptor.self), securityLabel: label)
    }
}
