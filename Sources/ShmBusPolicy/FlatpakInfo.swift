import DBus
import Foundation
import Glibc
import ShmBusProtocol
import ShmBusSystem

/// Recognises a Flatpak sandbox the way xdg-desktop-portal does: through the caller's
/// process, by the `/.flatpak-info` that Flatpak (or bubblewrap laid out like it) puts
/// at the root of the sandbox's mount namespace, and reads the app ID from its
/// `[Application]` group, key `name`.
///
/// The file is read through `/proc/PID/root` of the process the bus names, and the
/// process is held by a pidfd from before the file is opened to after it is read: if
/// the process is still alive then, the PID named it throughout. The bus's `ProcessFD`
/// names the very process that connected; without it the pidfd is opened from the
/// `ProcessID` as soon as the connection is first seen, and a process that exits and
/// whose PID is reused before then is the remaining gap (docs/SECURITY.md).
public enum FlatpakInfo {
    /// The file is small; anything larger is not Flatpak's.
    static let maxSize = 64 * 1024

    /// What to make of a caller of another Unix user whose process this one may not look
    /// into (only root may look into other users' processes: `/proc/PID/root` needs
    /// ptrace access).
    public enum OtherUsersProcesses: Sendable {
        /// Refuse it: nobody can say it is not sandboxed. The registry's choice: it runs as
        /// root where other users call it (docs/SECURITY.md), and apps that Flatpak lets
        /// talk to it on the system bus must be told apart.
        case refuse
        /// Take it for its Unix user. A publisher's choice: it runs as its own user and
        /// could otherwise serve no other user at all, whatever its readers say; an app
        /// cannot call a publisher's unique name through Flatpak's bus proxy anyway
        /// (docs/SECURITY.md, "What ShmBus does not promise").
        case takeForTheirUser
    }

    /// The app ID of the sandbox `credentials` come from; nil when the process is not
    /// in one.
    ///
    /// - Throws: ``ShmBusError`` (`AccessDenied`) when the process cannot be examined (it
    ///   ended, or this process may not look into it, unless `otherUsers` says to take
    ///   another user's process for that user): then nobody can say it is not
    ///   sandboxed, and callers refuse what a sandbox may not do.
    public static func appID(of credentials: ConnectionCredentials, otherUsers: OtherUsersProcesses = .refuse) throws(ShmBusError)
        -> String?
    {
        let process: UnixFileDescriptor
        let pid: pid_t
        do {
            if let given = credentials.processFD {
                process = given
                pid = try Self.pid(ofPidfd: given)
            } else if let number = credentials.processID {
                pid = pid_t(bitPattern: number)
                process = try UnixFileDescriptor.pidfd(of: pid)
            } else {
                throw ShmBusError.accessDenied("the bus does not say which process the caller is, so whether it is sandboxed is unknown")
            }
        } catch let error as ShmBusError {
            throw error
        } catch {
            throw .accessDenied("cannot examine the caller's process: \(error)")
        }
        let text: String?
        do {
            let root = try UnixFileDescriptor.directoryPath("/proc/\(pid)/root")
            text = try read(relativeTo: root)
        } catch {
            // Never for the caller's own user: an app that made itself impossible to
            // examine (prctl PR_SET_DUMPABLE 0) must not pass for its user.
            if otherUsers == .takeForTheirUser, geteuid() != 0, credentials.unixUserID != geteuid(),
                [.permissionDenied, .notPermitted].contains(error.errno)
            {
                return nil
            }
            // Looking into another user's process takes root or CAP_SYS_PTRACE: a
            // registry on the system bus needs one of them to tell sandboxes apart.
            throw .accessDenied(
                "cannot tell whether process \(pid) is sandboxed: \(error) (a registry serving other users runs as root or with CAP_SYS_PTRACE)")
        }
        guard process.processIsAlive() else {
            throw .accessDenied("process \(pid) ended while it was examined; whether it was sandboxed is unknown")
        }
        guard let text else { return nil }
        guard let name = value(of: "name", inGroup: "Application", in: text), isValidAppID(name) else {
            throw .accessDenied("process \(pid) is sandboxed (it has /.flatpak-info) but names no valid app ID in it")
        }
        return name
    }

    /// The app ID of this process's own sandbox, nil outside one (or when its
    /// `/.flatpak-info` cannot be read: this process then treats itself as its user).
    public static func ownAppID() -> String? {
        guard let root = try? UnixFileDescriptor.directoryPath("/"), let text = (try? read(relativeTo: root)) ?? nil,
            let name = value(of: "name", inGroup: "Application", in: text), isValidAppID(name)
        else { return nil }
        return name
    }

    /// The `.flatpak-info` at `root`, nil when there is none.
    private static func read(relativeTo root: UnixFileDescriptor) throws(SystemError) -> String? {
        let file: UnixFileDescriptor
        do {
            // O_NOFOLLOW: a symbolic link there would resolve against this process's root.
            file = try root.openAt(".flatpak-info", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        } catch where error.errno == .noSuchFileOrDirectory {
            return nil
        }
        let info = try file.status()
        guard info.st_mode & S_IFMT == S_IFREG, info.st_size <= maxSize else {
            throw SystemError(.invalidArgument, call: "fstat", context: ".flatpak-info is not a regular file of at most \(maxSize) bytes")
        }
        return String(decoding: try file.readAll(limit: maxSize), as: UTF8.self)
    }

    /// The PID a pidfd names (its `Pid:` line in /proc/self/fdinfo).
    private static func pid(ofPidfd fd: UnixFileDescriptor) throws(SystemError) -> pid_t {
        let path = fd.withRawValue { "/proc/self/fdinfo/\($0)" }
        let info = try UnixFileDescriptor.open(path, O_RDONLY)
        for line in String(decoding: try info.readAll(limit: 4096), as: UTF8.self).split(separator: "\n") where line.hasPrefix("Pid:") {
            if let pid = pid_t(line.dropFirst(4).trimmingCharacters(in: .whitespaces)), pid > 0 { return pid }
        }
        throw SystemError(.noSuchProcess, call: "pidfd", context: "the caller's process has ended")
    }

    /// A key's value in a group of a GKeyFile-style text (`[Group]`, `key=value`).
    static func value(of key: String, inGroup group: String, in text: String) -> String? {
        var inGroup = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                inGroup = line == "[\(group)]"
                continue
            }
            guard inGroup, let equals = line.firstIndex(of: "=") else { continue }
            if line[..<equals].trimmingCharacters(in: .whitespaces) == key {
                return line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// Flatpak's app-ID rules (`flatpak_is_valid_name`): at most 255 characters, at least
    /// three dot-separated elements of `[A-Za-z0-9_-]`, none empty or starting with a
    /// digit; the last may contain `-`, the others may too (Flatpak allows it).
    public static func isValidAppID(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= 255 else { return false }
        let elements = id.split(separator: ".", omittingEmptySubsequences: false)
        guard elements.count >= 3 else { return false }
        for element in elements {
            guard let first = element.utf8.first, !(0x30...0x39).contains(first) else { return false }
            for c in element.utf8 {
                let ok = (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || (0x30...0x39).contains(c) || c == 0x5F || c == 0x2D
                if !ok { return false }
            }
        }
        return true
    }
}
