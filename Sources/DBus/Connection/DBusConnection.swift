import Foundation
import Logging
import Synchronization

/// A connection to a message bus, driven by its own loop thread.
///
/// ```swift
/// let bus = try await DBusConnection.connect(to: .session)
/// let reply = try await bus.call(
///     destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
///     interface: "org.freedesktop.DBus", method: "ListNames")
/// let names = try reply.body.decode([String].self)
/// ```
///
/// Every connection is private (`dbus_connection_open_private`): nothing else in the
/// process shares it, and it never calls `_exit` on disconnection. All libdbus calls
/// for it run on one thread; the methods here can be called from any task or thread
/// (see the "Threading" section of docs/ARCHITECTURE.md). The connection closes when
/// ``close()`` is called or the last reference goes away.
public final class DBusConnection: Sendable {
    /// Which bus to connect to.
    public enum Bus: Sendable, Hashable, CustomStringConvertible {
        /// The session bus: `DBUS_SESSION_BUS_ADDRESS`, else libdbus's defaults.
        case session
        /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`.
        case system
        /// Any bus address, such as `unix:path=/tmp/bus`.
        case address(String)

        /// Parses `session`, `system` or an address.
        public init(parsing text: String) {
            switch text {
            case "session": self = .session
            case "system": self = .system
            default: self = .address(text)
            }
        }

        public var description: String {
            switch self {
            case .session: "session bus"
            case .system: "system bus"
            case .address(let a): "bus at \(a)"
            }
        }
    }

    let core: LoopCore
    /// The unique name the bus assigned to this connection, such as `:1.42`.
    public let uniqueName: String
    /// Whether the connection negotiated Unix fd passing (required for `h` values).
    public let canPassUnixFDs: Bool
    public let bus: Bus
    public let logger: Logger
    private let nextID = Atomic<UInt64>(1)

    private init(core: LoopCore, uniqueName: String, canPassUnixFDs: Bool, bus: Bus, logger: Logger) {
        self.core = core
        self.uniqueName = uniqueName
        self.canPassUnixFDs = canPassUnixFDs
        self.bus = bus
        self.logger = logger
    }

    /// Connects to `bus` and registers on it (`Hello`), on a new loop thread.
    ///
    /// - Parameter scheduling: how the handlers of exported objects are run: per-sender
    ///   queues served in turn, with bounded concurrency.
    /// - Throws: ``DBusError`` naming the bus and libdbus's reason when it cannot be
    ///   reached, for example when `DBUS_SESSION_BUS_ADDRESS` is unset and no
    ///   session bus runs.
    public static func connect(
        to bus: Bus = .session, scheduling: CallScheduling = CallScheduling(), logger: Logger = Logger(label: "org.shmbus.dbus")
    ) async throws(DBusError) -> DBusConnection {
        let core = try LoopCore(scheduling: scheduling)
        let result: Result<(String, Bool), DBusError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                let loop: ConnectionLoop
                do throws(DBusError) {
                    loop = try ConnectionLoop(bus: bus, core: core, logger: logger)
                } catch {
                    _ = core.close()
                    continuation.resume(returning: .failure(error))
                    return
                }
                continuation.resume(returning: .success((loop.uniqueName, loop.canPassUnixFDs)))
                loop.run()
            }
            thread.name = "dbus-loop"
            thread.start()
        }
        let (uniqueName, canPassUnixFDs) = try result.get()
        let connection = DBusConnection(
            core: core, uniqueName: uniqueName, canPassUnixFDs: canPassUnixFDs, bus: bus, logger: logger)
        logger.debug("connected", metadata: ["bus": "\(bus)", "unique-name": "\(uniqueName)"])
        return connection
    }

    deinit {
        core.submit { $0.shutdown(reason: "the connection was released") }
    }

    /// Closes the connection. Calls in flight fail with `Disconnected`, signal streams
    /// end, exports disappear. Idempotent.
    public func close() {
        core.submit { $0.shutdown(reason: "closed by the application") }
    }

    /// How the handlers of exported objects are run (given to ``connect(to:scheduling:logger:)``).
    public var callScheduling: CallScheduling { core.scheduler.limits }

    /// Whether the connection is still open.
    public var isConnected: Bool { !core.isClosed }

    func makeID() -> UInt64 {
        nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Runs `body` on the loop thread, throwing when the connection is closed.
    func onLoop(_ body: @escaping @Sendable (ConnectionLoop) -> Void) throws(DBusError) {
        guard core.submit(body) else { throw .disconnected() }
    }

    /// Sends a message without waiting for anything: signals, replies, and method calls
    /// with `DBusMessage.noReplyExpected` set. Returns once the message is queued.
    public func send(_ message: DBusMessage) throws(DBusError) {
        let raw = try message.makeRaw()
        try checkUnixFDs(raw)
        try onLoop { loop in
            do {
                try loop.send(raw)
            } catch {
                loop.logger.warning("send failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func checkUnixFDs(_ raw: RawMessage) throws(DBusError) {
        if raw.unixFDCount > 0, !canPassUnixFDs {
            throw .notSupported("this connection did not negotiate Unix fd passing; cannot send file descriptors")
        }
    }

    /// Emits a signal from this connection.
    public func emit(
        path: ObjectPath, interface: String, member: String, _ body: [DBusValue] = [], destination: String? = nil
    ) throws(DBusError) {
        try send(DBusMessage.signal(path: path, interface: interface, member: member, body: body, destination: destination))
    }
}
