import CDBus
import Glibc
import HeapModule
import Logging
import ShmBusSystem

/// Everything about one connection that only its loop thread touches: the libdbus
/// connection, its watches and timeouts, replies awaited, signal subscriptions and
/// exported objects.
///
/// The loop polls the connection's sockets and the core's eventfd, lets libdbus read
/// and write (`dbus_watch_handle`), runs queued commands, and dispatches incoming
/// messages through one filter (`dbus_connection_add_filter`). Nothing here is
/// `Sendable`: it never leaves the thread (see docs/ARCHITECTURE.md).
final class ConnectionLoop {
    let core: LoopCore
    let connection: OpaquePointer
    let logger: Logger
    /// The unique name the bus gave us in `Hello`.
    let uniqueName: String
    let canPassUnixFDs: Bool
    /// The connection's socket (libdbus's), to see how much of what was written the bus
    /// has not read yet.
    let socket: Int32?
    private(set) var isOpen = true
    /// When `poll` last returned: where a served call's time in this process starts
    /// (``DBusConnection/ServedCall/inLoop``).
    private(set) var wokeAt = ContinuousClock.now

    private(set) var watches: [OpaquePointer] = []
    private var timeouts: [OpaquePointer: ContinuousClock.Instant] = [:]

    private var pendingReplies: [UInt32: ReplyHandler] = [:]
    private var replyDeadlines = Heap<ReplyDeadline>()

    var subscriptions: [UInt64: Subscription] = [:]
    /// Owners of the well-known names that subscriptions match on, kept current
    /// through NameOwnerChanged.
    var trackedNames: [String: TrackedName] = [:]
    var exports = ExportTree()

    enum ReplyHandler {
        /// A task awaits the reply.
        case task(PendingReply)
        /// The loop itself consumes the reply (name tracking, match bookkeeping).
        case loop((ConnectionLoop, Result<DBusMessage, DBusError>) -> Void)
    }

    private struct ReplyDeadline: Comparable {
        let instant: ContinuousClock.Instant
        let serial: UInt32
        static func < (a: ReplyDeadline, b: ReplyDeadline) -> Bool { a.instant < b.instant }
    }

    /// Opens and registers the connection (`dbus_bus_get_private` or
    /// `dbus_connection_open_private` + `dbus_bus_register`). Blocking; runs on the
    /// new loop thread before it starts looping.
    init(bus: DBusConnection.Bus, core: LoopCore, logger: Logger) throws(DBusError) {
        self.core = core
        self.logger = logger
        dbus_threads_init_default()
        var error = CDBus.DBusError()
        dbus_error_init(&error)
        var opened: OpaquePointer?
        switch bus {
        case .session, .system:
            let type = bus == .session ? DBUS_BUS_SESSION : DBUS_BUS_SYSTEM
            opened = dbus_bus_get_private(type, &error)
            guard let opened else {
                throw DBusError.consuming(&error, context: "cannot connect to the \(bus)")
            }
            // dbus_bus_get* turns exit-on-disconnect on: a library must not _exit.
            dbus_connection_set_exit_on_disconnect(opened, 0)
        case .address(let address):
            guard hasNoEmbeddedNUL(address) else { throw .invalidArgument("bus address contains a NUL byte") }
            opened = address.withCString { dbus_connection_open_private($0, &error) }
            guard let opened else {
                throw DBusError.consuming(&error, context: "cannot connect to the bus at '\(address)'")
            }
            dbus_connection_set_exit_on_disconnect(opened, 0)
            guard dbus_bus_register(opened, &error) != 0 else {
                dbus_connection_close(opened)
                dbus_connection_unref(opened)
                throw DBusError.consuming(&error, context: "cannot register with the bus at '\(address)'")
            }
        }
        guard let connection = opened else { throw .failed("libdbus returned no connection") }
        self.connection = connection
        uniqueName = dbus_bus_get_unique_name(connection).map { String(cString: $0) } ?? ""
        canPassUnixFDs = dbus_connection_can_send_type(connection, DBusTypeCode.unixFD.cValue) != 0
        // Received messages may be up to the protocol's 128 MiB; let libdbus queue a
        // couple of them before it stops reading.
        dbus_connection_set_max_received_size(connection, 2 * DBusLimits.maximumMessageLength)
        dbus_connection_set_max_message_size(connection, DBusLimits.maximumMessageLength)
        // And descriptors: received messages may hold what the scheduler lets waiting
        // calls hold, plus one message's worth, before libdbus stops reading. Without
        // this bound the loop, which reads on while the socket has data (`readOn`), took
        // in a whole burst of descriptor-carrying calls at once (libdbus's own default is
        // in the thousands); a process near its RLIMIT_NOFILE then failed to receive
        // them, and libdbus dropped the connection to the bus (DescriptorLimitTests: a
        // burst of 200 registrations with doorbells at a soft limit of 1,024 took the
        // registry off the bus).
        dbus_connection_set_max_received_unix_fds(connection, core.scheduler.limits.queuedUnixFDs + Self.oneMessageOfDescriptors)
        var socket: Int32 = -1
        self.socket = dbus_connection_get_socket(connection, &socket) != 0 ? socket : nil
        installCallbacks()
    }

    /// The descriptors one received message is counted on for (the registry's
    /// descriptor reserve counts the same; the system bus passes at most 16).
    static let oneMessageOfDescriptors = 64

    private var unmanagedSelf: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private static func loop(_ data: UnsafeMutableRawPointer?) -> ConnectionLoop? {
        data.map { Unmanaged<ConnectionLoop>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Registers the watch, timeout and filter callbacks. `self` outlives the
    /// connection (the thread owns it until after `dbus_connection_unref`), so the
    /// unretained pointer handed to libdbus stays valid.
    private func installCallbacks() {
        dbus_connection_set_watch_functions(
            connection,
            { watch, data in
                guard let watch, let loop = ConnectionLoop.loop(data) else { return 0 }
                loop.watches.append(watch)
                return 1
            },
            { watch, data in
                guard let watch, let loop = ConnectionLoop.loop(data) else { return }
                loop.watches.removeAll { $0 == watch }
            },
            nil,  // toggled: the poll set is rebuilt from dbus_watch_get_enabled each time
            unmanagedSelf, nil)
        dbus_connection_set_timeout_functions(
            connection,
            { timeout, data in
                guard let timeout, let loop = ConnectionLoop.loop(data) else { return 0 }
                loop.timeouts[timeout] = ContinuousClock.now + .milliseconds(Int(dbus_timeout_get_interval(timeout)))
                return 1
            },
            { timeout, data in
                guard let timeout, let loop = ConnectionLoop.loop(data) else { return }
                loop.timeouts[timeout] = nil
            },
            { timeout, data in
                guard let timeout, let loop = ConnectionLoop.loop(data) else { return }
                loop.timeouts[timeout] = ContinuousClock.now + .milliseconds(Int(dbus_timeout_get_interval(timeout)))
            },
            unmanagedSelf, nil)
        dbus_connection_set_wakeup_main_function(
            connection,
            { data in ConnectionLoop.loop(data)?.core.signalWake() },
            unmanagedSelf, nil)
        dbus_connection_add_filter(
            connection,
            { _, message, data in
                guard let message, let loop = ConnectionLoop.loop(data) else {
                    return DBUS_HANDLER_RESULT_NOT_YET_HANDLED
                }
                return loop.receive(message)
            },
            unmanagedSelf, nil)
    }

    // MARK: The loop

    /// Runs until the connection closes, then releases it.
    func run() {
        var pollSet: [pollfd] = []
        var polledWatches: [OpaquePointer] = []
        while isOpen {
            for command in core.takeCommands() {
                command(self)
                if !isOpen { break }
            }
            guard isOpen else { break }
            while isOpen, dbus_connection_dispatch(connection) == DBUS_DISPATCH_DATA_REMAINS {}
            guard isOpen else { break }
            expireReplies()
            fireTimeouts()
            reportOutgoing()

            pollSet.removeAll(keepingCapacity: true)
            polledWatches.removeAll(keepingCapacity: true)
            pollSet.append(pollfd(fd: core.wakeFD, events: Int16(POLLIN), revents: 0))
            for watch in watches where dbus_watch_get_enabled(watch) != 0 {
                let flags = dbus_watch_get_flags(watch)
                var events: Int16 = 0
                if flags & DBUS_WATCH_READABLE.rawValue != 0 { events |= Int16(POLLIN) }
                if flags & DBUS_WATCH_WRITABLE.rawValue != 0 { events |= Int16(POLLOUT) }
                pollSet.append(pollfd(fd: dbus_watch_get_unix_fd(watch), events: events, revents: 0))
                polledWatches.append(watch)
            }
            let hasQueued = dbus_connection_get_dispatch_status(connection) == DBUS_DISPATCH_DATA_REMAINS
            let ready = poll(&pollSet, nfds_t(pollSet.count), hasQueued ? 0 : pollTimeoutMilliseconds())
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("poll failed", metadata: ["errno": "\(errno)"])
                shutdown(reason: "poll failed with errno \(errno)")
                break
            }
            wokeAt = .now
            if pollSet[0].revents != 0 { core.drainWake() }
            for (index, watch) in polledWatches.enumerated() {
                let revents = pollSet[index + 1].revents
                guard revents != 0, watches.contains(watch) else { continue }
                var flags: UInt32 = 0
                if revents & Int16(POLLIN) != 0 { flags |= DBUS_WATCH_READABLE.rawValue }
                if revents & Int16(POLLOUT) != 0 { flags |= DBUS_WATCH_WRITABLE.rawValue }
                if revents & Int16(POLLHUP) != 0 { flags |= DBUS_WATCH_HANGUP.rawValue }
                if revents & Int16(POLLERR) != 0 { flags |= DBUS_WATCH_ERROR.rawValue }
                dbus_watch_handle(watch, flags)
                if flags == DBUS_WATCH_READABLE.rawValue { readOn(watch) }
            }
            if dbus_connection_get_is_connected(connection) == 0 {
                // libdbus queues a Disconnected signal; dispatch it so that subscribers
                // see it, then shut down.
                while dbus_connection_dispatch(connection) == DBUS_DISPATCH_DATA_REMAINS {}
                shutdown(reason: "the bus closed the connection")
            }
        }
        dbus_connection_unref(connection)
    }

    /// Milliseconds until the next libdbus timeout or reply deadline; -1 for none.
    /// While handlers wait for the bus to read, 1 ms: a socket that drains wakes no
    /// poll of ours when libdbus has nothing left to write.
    private func pollTimeoutMilliseconds() -> Int32 {
        var next: ContinuousClock.Instant? = core.scheduler.isHoldingCalls ? .now + .milliseconds(1) : nil
        for (timeout, deadline) in timeouts where dbus_timeout_get_enabled(timeout) != 0 {
            if next == nil || deadline < next! { next = deadline }
        }
        if let reply = replyDeadlines.min, next == nil || reply.instant < next! { next = reply.instant }
        guard let next else { return -1 }
        let remaining = ContinuousClock.now.duration(to: next)
        if remaining <= .zero { return 0 }
        return Int32(clamping: remaining.roundedUpMilliseconds)
    }

    private func fireTimeouts() {
        guard !timeouts.isEmpty else { return }
        let now = ContinuousClock.now
        for (timeout, deadline) in timeouts where deadline <= now && dbus_timeout_get_enabled(timeout) != 0 {
            // libdbus timeouts repeat until removed.
            timeouts[timeout] = now + .milliseconds(Int(dbus_timeout_get_interval(timeout)))
            dbus_timeout_handle(timeout)
        }
    }

    // MARK: Sending

    /// Sends a message (`dbus_connection_send`); returns its serial.
    @discardableResult
    func send(_ message: RawMessage) throws(DBusError) -> UInt32 {
        guard isOpen else { throw .disconnected() }
        if message.unixFDCount > 0, !canPassUnixFDs {
            throw .notSupported("this connection did not negotiate Unix fd passing")
        }
        var serial: UInt32 = 0
        guard dbus_connection_send(connection, message.pointer, &serial) != 0 else {
            throw .failed("libdbus could not queue the message (out of memory)")
        }
        return serial
    }

    /// Sends a method call and routes its reply to `handler`, failing it with a timeout
    /// error after `timeout`.
    func sendCall(_ message: RawMessage, timeout: Duration?, handler: ReplyHandler) {
        do {
            let serial = try send(message)
            pendingReplies[serial] = handler
            if let timeout {
                replyDeadlines.insert(ReplyDeadline(instant: .now + timeout, serial: serial))
            }
        } catch {
            Self.deliver(handler, .failure(error), loop: self)
        }
    }

    /// Sends a method call built here on the loop (used for bus-driver bookkeeping).
    func callBus(
        _ member: String, _ body: [DBusValue], then handler: @escaping (ConnectionLoop, Result<DBusMessage, DBusError>) -> Void
    ) {
        do {
            let message = try DBusMessage.methodCall(
                destination: DBusConnection.busDestination, path: DBusConnection.busPath,
                interface: DBusConnection.busDestination, member: member, body: body)
            sendCall(try message.makeRaw(), timeout: .seconds(25), handler: .loop(handler))
        } catch {
            handler(self, .failure(error))
        }
    }

    private static func deliver(_ handler: ReplyHandler, _ result: Result<DBusMessage, DBusError>, loop: ConnectionLoop) {
        switch handler {
        case .task(let pending):
            pending.complete(result.mapError { $0 })
        case .loop(let body):
            body(loop, result)
        }
    }

    private func expireReplies() {
        let now = ContinuousClock.now
        while let first = replyDeadlines.min, first.instant <= now {
            replyDeadlines.removeMin()
            if let handler = pendingReplies.removeValue(forKey: first.serial) {
                Self.deliver(handler, .failure(.timedOut("no reply within the timeout")), loop: self)
            }
        }
    }

    // MARK: Receiving

    /// The filter: every message libdbus dispatches comes through here.
    private func receive(_ pointer: OpaquePointer) -> DBusHandlerResult {
        let message: DBusMessage
        do {
            message = try DBusMessage(reading: pointer)
        } catch {
            refuseUnreadable(pointer, error)
            return DBUS_HANDLER_RESULT_HANDLED
        }
        switch message.kind {
        case .methodReturn, .error:
            if let handler = pendingReplies.removeValue(forKey: message.replySerial) {
                let result: Result<DBusMessage, DBusError> =
                    if let error = message.error { .failure(error) } else { .success(message) }
                Self.deliver(handler, result, loop: self)
            }
        case .signal:
            if message.interface == "org.freedesktop.DBus.Local", message.member == "Disconnected" {
                shutdown(reason: "the bus closed the connection")
                return DBUS_HANDLER_RESULT_HANDLED
            }
            routeSignal(message)
        case .methodCall:
            exports.dispatch(message, loop: self)
        }
        return DBUS_HANDLER_RESULT_HANDLED
    }

    /// Answers a message whose body cannot be read (say, a handle past the end of its
    /// fd list) so that nobody waits for a timeout: a method call gets the error as its
    /// reply (`dbus_message_new_error`), and a reply fails the call it answers.
    private func refuseUnreadable(_ pointer: OpaquePointer, _ error: DBusError) {
        logger.warning("refusing a message that cannot be read", metadata: ["error": "\(error)"])
        switch Int32(dbus_message_get_type(pointer)) {
        case DBUS_MESSAGE_TYPE_METHOD_CALL:
            guard dbus_message_get_no_reply(pointer) == 0,
                let reply = error.name.withCString({ name in
                    error.message.withCString { dbus_message_new_error(pointer, name, $0) }
                })
            else { return }
            _ = try? send(RawMessage(taking: reply, unixFDCount: 0))
        case DBUS_MESSAGE_TYPE_METHOD_RETURN, DBUS_MESSAGE_TYPE_ERROR:
            if let handler = pendingReplies.removeValue(forKey: dbus_message_get_reply_serial(pointer)) {
                Self.deliver(handler, .failure(error), loop: self)
            }
        default:
            break
        }
    }

    // MARK: Shutdown

    /// Closes the connection (`dbus_connection_close`) and fails everything waiting on
    /// it. Commands still queued run against the closed loop, so their callers learn of
    /// the disconnection instead of waiting forever.
    func shutdown(reason: String) {
        guard isOpen else { return }
        isOpen = false
        logger.debug("connection closing", metadata: ["reason": "\(reason)"])
        let error = DBusError.disconnected("the connection to the bus is closed: \(reason)")
        for command in core.close() { command(self) }
        let handlers = pendingReplies
        pendingReplies = [:]
        for (_, handler) in handlers { Self.deliver(handler, .failure(error), loop: self) }
        finishSubscriptions(throwing: error)
        exports.removeAll()
        dbus_connection_close(connection)
    }
}
