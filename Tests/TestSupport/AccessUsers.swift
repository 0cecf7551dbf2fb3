import Foundation
import Glibc
import ShmBusSystem
import Testing

/// Real Unix users for the access and bridge tests (docs/SECURITY.md, issue 13). Made once per test
/// process and kept (reused by the next run): `shmbus-a` and `shmbus-b` are the two
/// ordinary users, `shmbus-c` a third one, and `shmbus-readers` a group of which only B
/// is a member.
public enum AccessUsers {
    public static let a = "shmbus-a"
    public static let b = "shmbus-b"
    public static let c = "shmbus-c"
    public static let group = "shmbus-readers"

    public static var isRoot: Bool { geteuid() == 0 }
    public static let needsRoot: Comment = "creates Unix users and runs processes as them: needs root (CI runs as root)"

    private static let prepared: Result<Void, any Error> = Result { try create() }

    /// Makes sure the users and the group exist, and B is in the group.
    public static func prepare() throws { try prepared.get() }

    /// `command` run as `user` (its uid, its group and supplementary groups) by
    /// setpriv, which execs it: the process keeps the pid it was started with.
    public static func command(_ command: [String], as user: String) -> [String] {
        ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups"] + command
    }

    public static func uid(_ name: String) -> UInt32 { getpwnam(name)?.pointee.pw_uid ?? UInt32.max }
    public static func gid(_ name: String) -> UInt32 { getpwnam(name)?.pointee.pw_gid ?? UInt32.max }

    private static func create() throws {
        for user in [a, b, c] where getpwnam(user) == nil {
            try tool("/usr/sbin/useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", user])
            guard getpwnam(user) != nil else { throw SetupFailure("useradd did not create \(user)") }
        }
        if getgrnam(group) == nil { try tool("/usr/sbin/groupadd", ["--system", group]) }
        if !members(of: group).contains(b) { try tool("/usr/sbin/usermod", ["--append", "--groups", group, b]) }
        guard members(of: group) == [b] else { throw SetupFailure("group \(group) should have only \(b): \(members(of: group))") }
    }

    private static func members(of group: String) -> [String] {
        guard let entry = getgrnam(group), var member = entry.pointee.gr_mem else { return [] }
        var names: [String] = []
        while let name = member.pointee {
            names.append(String(cString: name))
            member += 1
        }
        return names
    }

    /// Runs a setup tool; a failure that left what was wanted (another run made it) is
    /// checked by the caller.
    private static func tool(_ path: String, _ arguments: [String]) throws {
        let child = try ChildProcess(path, arguments, stdin: .null, stdout: .null, stderr: .null)
        let status = child.waitUntilExit()
        // 9: useradd/groupadd "already exists" (made concurrently): fine.
        guard status == .exited(0) || status == .exited(9) else { throw SetupFailure("\(path) \(arguments): \(status)") }
    }
}

public struct SetupFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
