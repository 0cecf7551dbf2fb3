import Glibc
import SystemPackage

/// A failed system call: the errno it left, the call's name, and what it was doing.
///
/// One error type for every wrapper of this module, after swift-nio's `IOError`: the
/// bare errno says what went wrong, the call and its context say where, so a message
/// reads "memfd_create(shmbus:cams/front) failed: Too many open files (errno 24)".
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The error number the call left in `errno` (or returned, for `posix_spawn`).
    public var errno: Errno
    /// The C call that failed, as in its man page: `"memfd_create"`, `"fcntl(F_ADD_SEALS)"`.
    public var call: String
    /// What the call was about (a name, a descriptor, a size); empty when nothing useful.
    public var context: String

    public init(_ errno: Errno, call: String, context: String = "") {
        self.errno = errno
        self.call = call
        self.context = context
    }

    /// The error the calling thread's `errno` describes now.
    public static func current(call: String, context: String = "") -> SystemError {
        SystemError(Errno(rawValue: Glibc.errno), call: call, context: context)
    }

    public var description: String {
        let what = context.isEmpty ? call : "\(call)(\(context))"
        return "\(what) failed: \(errno) (errno \(errno.rawValue))"
    }
}

/// Runs `body`, one C call that reports failure by returning -1 and setting `errno`,
/// and returns its result; on failure throws a ``SystemError`` naming `call`.
///
/// An interrupted call (`EINTR`) is made again unless `retryingOnInterrupt` is false:
/// every caller in this package wants the call done, not a signal reported. After
/// swift-nio's `syscall(blocking:where:_:)`.
@inlinable
public func systemCall<Value: FixedWidthInteger>(
    _ call: @autoclosure () -> String, context: @autoclosure () -> String = "", retryingOnInterrupt: Bool = true,
    _ body: () -> Value
) throws(SystemError) -> Value {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Glibc.errno
        if error == EINTR && retryingOnInterrupt { continue }
        throw SystemError(Errno(rawValue: error), call: call(), context: context())
    }
}
