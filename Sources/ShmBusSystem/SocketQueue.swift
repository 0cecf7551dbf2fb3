import CShmBusLinux
import Glibc

/// What a socket still holds for its peer.
public enum SocketQueue {
    /// The bytes queued on the socket `fd` that its peer has not read (`ioctl(2)`
    /// `SIOCOUTQ`, through `shmbus_socket_unsent`); for a Unix stream socket, the
    /// memory its queued buffers take, their overhead included. The descriptor is
    /// borrowed (a library's own, such as libdbus's connection socket).
    public static func unsentBytes(fileDescriptor fd: Int32) throws(SystemError) -> Int {
        Int(try systemCall("ioctl(SIOCOUTQ)") { shmbus_socket_unsent(fd) })
    }
}
