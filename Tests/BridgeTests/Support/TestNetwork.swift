import CShmBusLinux
import Foundation
import Glibc
import ShmBusSystem
import Synchronization
import TestSupport

/// Machines that share nothing but a network, on this one: network namespaces
/// (`ip netns`) joined by veth pairs to a Linux bridge in a namespace of its own (the
/// switch). Addresses are in 198.18.0.0/24, the range RFC 2544 sets aside for network
/// tests. Only threads and processes inside the namespaces may use them: this
/// process's own namespace may have a default route, through which a connection to
/// 198.18.0.x would leave the machine, so tests never connect from outside
/// (``onMachine(_:_:)`` enters a machine first).
///
/// Namespaces are named `shmbus-<pid>-<n>-<role>`; ``tearDown()`` deletes them (a test
/// calls it in a `defer`, so a failing test cleans up too), and a new network first
/// deletes those left by test processes that no longer exist (one killed mid-test).
final class TestNetwork {
    let prefix: String
    private(set) var machines: [String: String] = [:]
    private let switchNamespace: String
    private static let created = Atomic(0)

    /// Whether this process can make namespaces: root, with `ip netns`. Tests that need
    /// a network are skipped with this reason otherwise.
    static let unavailableReason: String? = {
        if geteuid() != 0 { return "network namespaces need root (ip netns add); CI runs as root" }
        guard ChildProcess.findExecutable("ip") != nil else { return "ip (iproute2) is not installed: make deps" }
        let probe = "shmbus-probe-\(getpid())"
        guard TestNetwork.runSync(["ip", "netns", "add", probe]) == 0 else { return "ip netns add fails here (no CAP_SYS_ADMIN?)" }
        TestNetwork.runSync(["ip", "netns", "del", probe])
        return nil
    }()
    static var available: Bool { unavailableReason == nil }

    init() async throws {
        prefix = "shmbus-\(getpid())-\(Self.created.add(1, ordering: .relaxed).newValue)"
        switchNamespace = "\(prefix)-sw"
        try await Self.removeStale()
        try await Self.ip("netns", "add", switchNamespace)
        try await Self.ip("-n", switchNamespace, "link", "add", "br0", "type", "bridge")
        try await Self.ip("-n", switchNamespace, "link", "set", "br0", "up")
    }

    /// A machine called `role` at 198.18.0.`host`, plugged into the switch; returns its
    /// namespace's name.
    @discardableResult
    func addMachine(_ role: String, host: Int) async throws -> String {
        let namespace = "\(prefix)-\(role)"
        let address = "198.18.0.\(host)"
        try await Self.ip("netns", "add", namespace)
        let port = "p\(host)"
        try await Self.ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", port, "netns", switchNamespace)
        try await Self.ip("-n", switchNamespace, "link", "set", port, "master", "br0", "up")
        try await Self.ip("-n", namespace, "addr", "add", "\(address)/24", "dev", "eth0")
        try await Self.ip("-n", namespace, "link", "set", "eth0", "up")
        try await Self.ip("-n", namespace, "link", "set", "lo", "up")
        machines[role] = namespace
        return namespace
    }

    /// Deletes every namespace of this network (with them go their veths). Processes
    /// still inside keep theirs alive until they end: stop them first. Idempotent.
    func tearDown() {
        for namespace in machines.values.sorted() + [switchNamespace] {
            _ = Self.runSync(["ip", "netns", "del", namespace])
        }
        machines = [:]
    }

    deinit {
        tearDown()
    }

    /// Runs `body` on a thread of its own that has entered `namespace`'s network: the
    /// sockets it opens (NATS.c's among them, and those of the threads NATS.c starts
    /// from it) are that machine's. Other threads of the process are not affected.
    static func onMachine<T: Sendable>(_ namespace: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await onOwnThread {
            let fd = open("/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw TestFailure("cannot open /run/netns/\(namespace): errno \(errno)") }
            defer { close(fd) }
            guard shmbus_enter_network_namespace(fd) == 0 else { throw TestFailure("setns(\(namespace)) failed: errno \(errno)") }
            return try body()
        }
    }

    static func ip(_ arguments: String...) async throws {
        let result = try await BuiltProducts.run("ip", arguments)
        guard result.status == .exited(0) else {
            throw TestFailure("ip \(arguments.joined(separator: " ")) \(result.status): \(result.stderr)")
        }
    }

    /// Namespaces of test processes that are gone.
    private static func removeStale() async throws {
        let listed = try await BuiltProducts.run("ip", ["netns", "list"])
        for line in listed.stdout.split(separator: "\n") {
            let name = line.split(separator: " ").first.map(String.init) ?? ""
            let parts = name.split(separator: "-")
            guard parts.count >= 3, parts[0] == "shmbus", let pid = pid_t(parts[1]), pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { _ = runSync(["ip", "netns", "del", name]) }
        }
    }

    /// Runs a command to completion, blocking: for teardown, which must not depend on a
    /// task (it runs in `deinit`, and in `defer` after a failure).
    @discardableResult
    static func runSync(_ arguments: [String]) -> Int32 {
        guard let child = try? ChildProcess(arguments[0], Array(arguments.dropFirst()), stdout: .null, stderr: .null) else {
            return -1
        }
        if case .exited(let code) = child.waitUntilExit() { return code }
        return -1
    }
}
