import DBus
import SharedSegments
import ShmBusSystem
import SystemPackage

/// An error of ShmBus: from the registry (carried on the bus as `org.shmbus.Error.*`),
/// from a segment, from the bus itself, or from a system call.
///
/// ``code`` says what kind of failure it is and is what programs branch on;
/// ``message`` says what happened and, where there is one, what to do about it (the
/// hint a command-line tool would add is in the message, so every program gets it);
/// ``cause`` keeps the error underneath, with its own details.
public struct ShmBusError: Error, Sendable, CustomStringConvertible, DBusErrorConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// No such channel, segment or key.
        case notFound = "NotFound"
        /// The caller may not do this (not the channel's owner, say).
        case accessDenied = "AccessDenied"
        /// An argument is malformed.
        case invalidArgument = "InvalidArgument"
        /// A segment's descriptor lacks required seals.
        case notSealed = "NotSealed"
        /// A segment's contents are invalid.
        case badSegment = "BadSegment"
        /// A per-connection or global limit was reached.
        case quotaExceeded = "QuotaExceeded"
        /// The channel already has an active segment of this owner.
        case channelBusy = "ChannelBusy"
        /// The registry is not running and could not be activated, or did not answer.
        case registryUnavailable = "RegistryUnavailable"
        /// Any other failure on the bus.
        case bus = "Bus"
        /// A system call failed (see ``ShmBusError/cause``).
        case system = "System"
        /// The calling task was cancelled.
        case cancelled = "Cancelled"

        /// Whether the code is one of the contract's `org.shmbus.Error.*` names; the
        /// others describe this process's own failures and go on the bus as
        /// `org.freedesktop.DBus.Error.Failed`.
        public var isContractError: Bool {
            switch self {
            case .notFound, .accessDenied, .invalidArgument, .notSealed, .badSegment, .quotaExceeded, .channelBusy: true
            case .registryUnavailable, .bus, .system, .cancelled: false
            }
        }
    }

    /// The error underneath.
    public enum Cause: Sendable {
        /// A reply or failure of the bus.
        case bus(DBusError)
        /// A segment that failed validation, or could not be made.
        case segment(SegmentError)
        /// A failed system call: its errno, name and context.
        case system(SystemError)
    }

    public var code: Code
    public var message: String
    public var cause: Cause?

    public init(_ code: Code, _ message: String, cause: Cause? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The D-Bus error name of this code, `org.shmbus.Error.<Code>`.
    public var dbusName: String { "org.shmbus.Error.\(code.rawValue)" }

    /// This error as a D-Bus error reply: `org.shmbus.Error.<Code>` for the contract's
    /// codes, `org.freedesktop.DBus.Error.Failed` for a failure of this process.
    public var dbusError: DBusError {
        code.isContractError ? DBusError(name: dbusName, message: message) : .failed(message)
    }

    /// What to do when the registry cannot be reached, for every program's messages.
    public static let registryHint =
        "Start it with `shmbus daemon`, or install D-Bus activation with `shmbus install-service`."

    /// Maps a D-Bus error: `org.shmbus.Error.*` to its code, an unreachable registry to
    /// ``Code/registryUnavailable``, anything else to ``Code/bus``. The original is the
    /// ``cause``.
    public init(_ error: DBusError) {
        let prefix = "org.shmbus.Error."
        if error.name.hasPrefix(prefix), let code = Code(rawValue: String(error.name.dropFirst(prefix.count))) {
            self.init(code, error.message, cause: .bus(error))
        } else if error.name == DBusError.serviceUnknownName || error.name == DBusError.nameHasNoOwnerName
            || error.name.hasPrefix("org.freedesktop.DBus.Error.Spawn.")
        {
            self.init(.registryUnavailable, "the ShmBus registry is not running: \(error.message). \(Self.registryHint)", cause: .bus(error))
        } else if error.name == DBusError.noReplyName {
            // It died (or hung) with the call in flight.
            self.init(.registryUnavailable, "the ShmBus registry did not answer: \(error.message)", cause: .bus(error))
        } else {
            self.init(.bus, error.description, cause: .bus(error))
        }
    }

    /// Maps a segment error to the code a caller acts on.
    public init(_ error: SegmentError, context: String? = nil) {
        let message = context.map { "\($0): \(error.message)" } ?? error.message
        switch error.kind {
        case .notMemfd, .invalidArgument, .capacityExceeded, .leaseRequired: self.init(.invalidArgument, message, cause: .segment(error))
        // Its memory went to a later generation: as gone as a segment the registry dropped.
        case .reclaimed: self.init(.notFound, message, cause: .segment(error))
        case .notSealed: self.init(.notSealed, message, cause: .segment(error))
        case .tooSmall, .badHeader, .badRecord, .badDoorbell, .retired: self.init(.badSegment, message, cause: .segment(error))
        case .system: self.init(.system, message, cause: .segment(error))
        }
    }

    /// A failed system call.
    public init(_ error: SystemError) {
        self.init(.system, error.description, cause: .system(error))
    }

    /// A failed system call: `call` names it, `context` what it was for.
    public init(_ errno: Errno, call: String, context: String) {
        self.init(SystemError(errno, call: call, context: context))
    }

    /// Any error as a ``ShmBusError``: itself, or a D-Bus, segment or system error
    /// mapped; anything else (a caller's own error from a fill closure, say) is
    /// returned as it is by ``rethrowing(_:)``.
    public static func wrapping(_ error: any Error) -> ShmBusError? {
        switch error {
        case let error as ShmBusError: error
        case let error as DBusError: ShmBusError(error)
        case let error as SegmentError: ShmBusError(error)
        case let error as SystemError: ShmBusError(error)
        case is CancellationError: ShmBusError(.cancelled, "cancelled")
        default: nil
        }
    }

    /// Runs `body`, turning every D-Bus, segment and system error it throws into a
    /// ``ShmBusError``, so public API throws only this type.
    public static func rethrowing<T>(_ body: () async throws -> T) async throws(ShmBusError) -> T {
        do {
            return try await body()
        } catch {
            throw wrapping(error) ?? ShmBusError(.bus, "\(error)")
        }
    }

    public var description: String { message }
}

extension ShmBusError {
    /// Shorthands for the `org.shmbus.Error.*` replies.
    public static func notFound(_ message: String) -> ShmBusError { ShmBusError(.notFound, message) }
    public static func accessDenied(_ message: String) -> ShmBusError { ShmBusError(.accessDenied, message) }
    public static func invalidArgument(_ message: String) -> ShmBusError { ShmBusError(.invalidArgument, message) }
    public static func notSealed(_ message: String) -> ShmBusError { ShmBusError(.notSealed, message) }
    public static func badSegment(_ message: String) -> ShmBusError { ShmBusError(.badSegment, message) }
    public static func quotaExceeded(_ message: String) -> ShmBusError { ShmBusError(.quotaExceeded, message) }
    public static func channelBusy(_ message: String) -> ShmBusError { ShmBusError(.channelBusy, message) }
}
