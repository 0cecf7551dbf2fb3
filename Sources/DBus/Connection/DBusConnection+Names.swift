extension DBusConnection {
    /// The bus driver's name, which is also its interface's name.
    public static let busDestination = "org.freedesktop.DBus"
    /// The bus driver's object.
    public static let busPath: ObjectPath = "/org/freedesktop/DBus"

    /// The Unix user of the connection `name` as the bus reports it
    /// (`GetConnectionUnixUser`): the kernel's word, never the peer's.
    public func unixUser(of name: String) async throws -> UInt32 {
        try DBusName.validateBusName(name)
        return try await callBus("GetConnectionUnixUser", [.string(name)]).decode(UInt32.self)
    }

    /// Calls a method of the bus driver (`org.freedesktop.DBus`).
    func callBus(_ method: String, _ arguments: [DBusValue]) async throws -> [DBusValue] {
        try await call(
            destination: Self.busDestination, path: Self.busPath, interface: Self.busDestination, method: method, arguments)
    }

    /// Flags of `RequestName`.
    public struct RequestNameFlags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let allowReplacement = RequestNameFlags(rawValue: 0x1)
        public static let replaceExisting = RequestNameFlags(rawValue: 0x2)
        public static let doNotQueue = RequestNameFlags(rawValue: 0x4)
    }

    /// What `RequestName` did.
    public enum RequestNameReply: UInt32, Sendable {
        case primaryOwner = 1
        case inQueue = 2
        case exists = 3
        case alreadyOwner = 4
    }

    /// Asks the bus for a well-known name (`RequestName`).
    public func requestName(_ name: String, flags: RequestNameFlags = [.doNotQueue]) async throws -> RequestNameReply {
        try DBusName.validateBusName(name)
        let code = try await callBus("RequestName", [.string(name), .uint32(flags.rawValue)]).decode(UInt32.self)
        guard let reply = RequestNameReply(rawValue: code) else {
            throw DBusError.failed("RequestName returned unknown code \(code)")
        }
        return reply
    }

    /// What `ReleaseName` did.
    public enum ReleaseNameReply: UInt32, Sendable {
        case released = 1
        case nonExistent = 2
        case notOwner = 3
    }

    /// Gives a well-known name back (`ReleaseName`).
    @discardableResult
    public func releaseName(_ name: String) async throws -> ReleaseNameReply {
        try DBusName.validateBusName(name)
        let code = try await callBus("ReleaseName", [.string(name)]).decode(UInt32.self)
        guard let reply = ReleaseNameReply(rawValue: code) else {
            throw DBusError.failed("ReleaseName returned unknown code \(code)")
        }
        return reply
    }

    /// The unique name owning `name`, or nil when nobody owns it (`GetNameOwner`).
    public func nameOwner(of name: String) async throws -> String? {
        try DBusName.validateBusName(name)
        do {
            return try await callBus("GetNameOwner", [.string(name)]).decode(String.self)
        } catch let error as DBusError where error.name == DBusError.nameHasNoOwnerName {
            return nil
        }
    }

    /// The names on the bus (`ListNames`).
    public func listNames() async throws -> [String] {
        try await callBus("ListNames", []).decode([String].self)
    }

    /// One change of a name's owner.
    public struct NameOwnerChange: Sendable, Hashable {
        public var name: String
        /// nil when the name had no owner.
        public var oldOwner: String?
        /// nil when the name lost its owner.
        public var newOwner: String?
    }

    /// Changes of `name`'s owner (all names when nil), from the bus's
    /// `NameOwnerChanged` signal.
    public func nameOwnerChanges(for name: String? = nil) async throws -> AsyncThrowingCompactMapSequence<
        DBusSignalStream, NameOwnerChange
    > {
        var rule = MatchRule(sender: Self.busDestination, interface: Self.busDestination, member: "NameOwnerChanged")
        rule.path = Self.busPath
        if let name { rule = rule.matching(argument: 0, try DBusName.validateBusName(name)) }
        return try await signals(matching: rule).compactMap { message in
            guard let (name, old, new) = try? message.body.decode(String.self, String.self, String.self) else {
                return nil
            }
            return NameOwnerChange(name: name, oldOwner: old.isEmpty ? nil : old, newOwner: new.isEmpty ? nil : new)
        }
    }
}
