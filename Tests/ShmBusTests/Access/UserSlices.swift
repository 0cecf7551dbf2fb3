import Foundation
import Glibc

/// A CPU cgroup per Unix user for the processes the access tests run as other users,
/// the way systemd runs each user's processes in a `user-UID.slice` of its own, with one
/// weight per user (and `user.slice` beside `system.slice`, where the bus and the
/// registry run).
///
/// Without it the kernel shares the CPU per thread: `FairLoadTests`' flood from 100
/// connections is 105 threads of user B, and on two cores they kept user A's threads, the
/// registry's and dbus-daemon's waiting for a core, so that A's `Lookup` p99 read
/// 0.7-2.2 s with the registry using a sixth of a core; with the flood's threads at nice
/// 19, 16-19 ms (docs/RELIABILITY.md, "Fair under load"). What that measured was the
/// CPU scheduler, which a systemd machine configures per user and this test machine
/// (PID 1 is not systemd) does not. So the tests put each user in a group of
/// `shmbus-users` as systemd would, where the machine lets them; where it does not,
/// ``description`` says so and the figures are the per-thread scheduler's.
enum UserSlices {
    /// The `cgroup.procs` file of the group `name` (a user's name, or a client's that
    /// runs as a service of its own would), made on first use; nil when there is no CPU
    /// controller this process may use.
    static func processesFile(of name: String) -> String? {
        guard let root = root.value else { return nil }
        let group = "\(root)/\(name)"
        guard mkdir(group, 0o755) == 0 || errno == EEXIST else { return nil }
        return "\(group)/cgroup.procs"
    }

    /// Where the groups are, for the tests' reports: "cgroup-v1 PATH", "cgroup-v2 PATH"
    /// or "none (why)".
    static var description: String {
        switch root {
        case .found(let path, let version): "cgroup-\(version) \(path)"
        case .none(let why): "none (\(why))"
        }
    }

    /// The command that runs `command` in the group `name`: a shell, still root, moves
    /// itself there and then execs it, so that nothing of it runs outside the group.
    static func command(_ command: [String], in name: String) -> [String] {
        guard let file = processesFile(of: name) else { return command }
        return ["/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\"", file] + command
    }

    private enum Root {
        case found(String, version: String)
        case none(String)

        var value: String? {
            if case .found(let path, _) = self { return path }
            return nil
        }
    }

    /// `shmbus-users` under the CPU controller: in cgroup v1's `cpu` hierarchy within
    /// this process's own group (so that a test run given a group of its own keeps its
    /// users inside it), or at the root of the unified hierarchy with `cpu` enabled for
    /// its children (cgroup v2). Made once and kept, like the users; empty groups cost
    /// nothing.
    private static let root: Root = {
        guard geteuid() == 0 else { return .none("not root") }
        // For comparisons (docs/RELIABILITY.md): the per-thread scheduler, as without systemd.
        if ProcessInfo.processInfo.environment["SHMBUS_TEST_NO_CPU_GROUPS", default: ""].isEmpty == false { return .none("SHMBUS_TEST_NO_CPU_GROUPS is set") }
        let v1 = "/sys/fs/cgroup/cpu"
        if FileManager.default.fileExists(atPath: "\(v1)/cpu.shares") {
            let path = "\(v1)\(ownGroup(controller: "cpu") ?? "/")/shmbus-users".replacingOccurrences(of: "//", with: "/")
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else { return .none("mkdir \(path): \(String(cString: strerror(errno)))") }
            return .found(path, version: "v1")
        }
        let v2 = "/sys/fs/cgroup"
        guard let controllers = try? String(contentsOfFile: "\(v2)/cgroup.controllers", encoding: .utf8),
            controllers.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "cpu" })
        else { return .none("no cpu controller in cgroup v1 or v2") }
        // At the root: a v2 group that holds processes (this one's, say) cannot have
        // children with controllers, and the root is exempt.
        let path = "\(v2)/shmbus-users"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST,
            write("+cpu", to: "\(v2)/cgroup.subtree_control"), write("+cpu", to: "\(path)/cgroup.subtree_control")
        else { return .none("cannot enable the cpu controller under \(path)") }
        return .found(path, version: "v2")
    }()

    /// This process's group in cgroup v1's hierarchy of `controller`, from
    /// /proc/self/cgroup ("ID:CONTROLLERS:PATH" per line).
    private static func ownGroup(controller: String) -> String? {
        guard let lines = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in lines.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = fields[1].split(separator: ",").map(String.init)
            if controllers.contains(controller) { return String(fields[2]) }
        }
        return nil
    }

    private static func write(_ text: String, to file: String) -> Bool {
        (try? text.write(toFile: file, atomically: false, encoding: .utf8)) != nil
    }
}
