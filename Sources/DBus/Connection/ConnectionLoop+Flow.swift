import CDBus
import Glibc
import ShmBusSystem

/// How much the loop reads and lets handlers write in a turn (see
/// ``DBusConnection/CallScheduling``): read everything the bus has sent, so that every
/// sender's calls wait in their own queue rather than in the bus's one; start no
/// handler while the bus lags behind reading what was written.
extension ConnectionLoop {
    /// libdbus reads about 2 KiB per `dbus_watch_handle`. What stays unread waits in the
    /// bus, which forwards every client's calls in one queue, served in arrival order
    /// whatever the scheduler does; so the loop reads on while the socket has data (up
    /// to `extraReads` more), and a flood waits in the per-sender queues instead, behind
    /// nobody else's call.
    func readOn(_ watch: OpaquePointer) {
        var pending = pollfd(fd: dbus_watch_get_unix_fd(watch), events: Int16(POLLIN), revents: 0)
        for _ in 0..<Self.extraReads {
            guard isOpen, watches.contains(watch), dbus_watch_get_enabled(watch) != 0,
                poll(&pending, 1, 0) == 1, pending.revents == Int16(POLLIN)
            else { return }
            dbus_watch_handle(watch, DBUS_WATCH_READABLE.rawValue)
        }
    }

    private static let extraReads = 63

    /// Tells the scheduler how much this connection has written that the bus has not
    /// read yet: libdbus's queue and the socket's. New handlers wait while it is over
    /// the limit (the bus reads more slowly than handlers write): a reply queued now
    /// would wait behind all of it, whoever it is for.
    func reportOutgoing() {
        let unsent = socket.flatMap { try? SocketQueue.unsentBytes(fileDescriptor: $0) } ?? 0
        core.scheduler.outgoing(
            bytes: Int(dbus_connection_get_outgoing_size(connection)) + unsent,
            unixFDs: Int(dbus_connection_get_outgoing_unix_fds(connection)))
    }
}
