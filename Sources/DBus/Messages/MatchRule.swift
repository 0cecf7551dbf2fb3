/// A D-Bus match rule (specification, "Match Rules"), used both to ask the bus for
/// messages (`AddMatch`) and to route the messages that arrive to the right stream.
///
/// ```swift
/// let rule = MatchRule(interface: "org.shmbus.Publisher1", member: "Committed")
///     .matching(argument: 0, "frames")
/// ```
public struct MatchRule: Hashable, Sendable, CustomStringConvertible {
    public var type: DBusMessage.Kind? = .signal
    /// A unique or well-known name; well-known names are resolved to their current
    /// owner when matching locally, as the bus does.
    public var sender: String?
    public var interface: String?
    public var member: String?
    public var path: ObjectPath?
    public var pathNamespace: ObjectPath?
    public var destination: String?
    /// `argN='value'`: argument N is a string equal to value.
    public var arguments: [Int: String] = [:]
    /// `argNpath='value'`: argument N is a string or path equal to value, or one of
    /// them ends in `/` and is a prefix of the other.
    public var argumentPaths: [Int: String] = [:]
    /// `arg0namespace='a.b'`: argument 0 is `a.b` or starts with `a.b.`.
    public var arg0Namespace: String?

    public init(
        type: DBusMessage.Kind? = .signal, sender: String? = nil, interface: String? = nil, member: String? = nil,
        path: ObjectPath? = nil, pathNamespace: ObjectPath? = nil, destination: String? = nil
    ) {
        self.type = type
        self.sender = sender
        self.interface = interface
        self.member = member
        self.path = path
        self.pathNamespace = pathNamespace
        self.destination = destination
    }

    /// The rule with `argN='value'` added.
    public func matching(argument index: Int, _ value: String) -> MatchRule {
        var copy = self
        copy.arguments[index] = value
        return copy
    }

    /// Checks names, indices and length against the specification's limits.
    public func validate() throws(DBusError) {
        if let sender { try DBusName.validateBusName(sender) }
        if let interface { try DBusName.validateInterface(interface) }
        if let member { try DBusName.validateMember(member) }
        if let destination { try DBusName.validateBusName(destination) }
        if path != nil, pathNamespace != nil {
            throw .invalidArgument("a match rule cannot have both path and path_namespace")
        }
        for (index, value) in arguments.merging(argumentPaths, uniquingKeysWith: { a, _ in a }) {
            guard (0...63).contains(index) else { throw .invalidArgument("match rule argument index \(index) is not in 0...63") }
            try DBusName.validateString(value)
        }
        if arguments.keys.contains(where: { argumentPaths[$0] != nil }) {
            throw .invalidArgument("a match rule cannot constrain one argument with both argN and argNpath")
        }
        if let arg0Namespace { try DBusName.validateString(arg0Namespace) }
        let length = description.utf8.count
        guard length <= 1024 else {
            throw .limitsExceeded("match rule is \(length) bytes; the limit is 1024")
        }
    }

    /// The rule in the bus's syntax: `type='signal',interface='…',arg0='…'`.
    public var description: String {
        var parts: [String] = []
        func add(_ key: String, _ value: String?) {
            guard let value else { return }
            parts.append("\(key)=\(Self.quote(value))")
        }
        let typeName: String? = switch type {
        case .methodCall: "method_call"
        case .methodReturn: "method_return"
        case .error: "error"
        case .signal: "signal"
        case nil: nil
        }
        add("type", typeName)
        add("sender", sender)
        add("interface", interface)
        add("member", member)
        add("path", path?.rawValue)
        add("path_namespace", pathNamespace?.rawValue)
        add("destination", destination)
        for index in arguments.keys.sorted() { add("arg\(index)", arguments[index]) }
        for index in argumentPaths.keys.sorted() { add("arg\(index)path", argumentPaths[index]) }
        add("arg0namespace", arg0Namespace)
        return parts.joined(separator: ",")
    }

    /// Quotes a value: inside single quotes a quote cannot be escaped, so it is closed,
    /// emitted as `\'`, and reopened (specification, "Match Rules").
    private static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Whether `message` matches, given `senderOwner` as the current unique owner of a
    /// well-known `sender` (nil when it has none or is not tracked).
    func matches(_ message: DBusMessage, senderOwner: String?) -> Bool {
        if let type, message.kind != type { return false }
        if let sender {
            if sender.hasPrefix(":") || sender == DBusConnection.busDestination {
                if message.sender != sender { return false }
            } else if senderOwner == nil || message.sender != senderOwner {
                return false
            }
        }
        if let interface, message.interface != interface { return false }
        if let member, message.member != member { return false }
        if let path, message.path != path { return false }
        if let pathNamespace {
            guard let messagePath = message.path, messagePath.isDescendant(of: pathNamespace) else { return false }
        }
        if let destination, message.destination != destination { return false }
        for (index, value) in arguments {
            guard index < message.body.count, case .string(let s) = message.body[index], s == value else { return false }
        }
        for (index, value) in argumentPaths {
            guard index < message.body.count else { return false }
            let s: String
            switch message.body[index] {
            case .string(let v): s = v
            case .objectPath(let v): s = v.rawValue
            default: return false
            }
            let prefixMatch = (value.hasSuffix("/") && s.hasPrefix(value)) || (s.hasSuffix("/") && value.hasPrefix(s))
            if s != value && !prefixMatch { return false }
        }
        if let arg0Namespace {
            guard case .string(let s)? = message.body.first,
                s == arg0Namespace || s.hasPrefix(arg0Namespace + ".")
            else { return false }
        }
        return true
    }
}
