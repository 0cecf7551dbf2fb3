import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// How a process run as a user ended.
struct Outcome: CustomStringConvertible {
    var status: ChildProcess.Termination
    var stdout: String
    var stderr: String
    var description: String { "\(status); stdout: \(stdout.prefix(600)); stderr: \(stderr.prefix(600))" }
}

/// A reply to a raw bus call made by python3-dbus in a user's process: the D-Bus error
/// name and message, or the value.
struct BusReply: CustomStringConvertible {
    var error: String?
    var message: String
    var value: Any?
    var succeeded: Bool { error == nil }
    var description: String { error.map { "\($0): \(message)" } ?? "ok \(value ?? "")" }

    init(json line: String) {
        let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        if let ok = object["ok"] {
            error = nil
            message = ""
            value = ok
        } else {
            error = object["error"] as? String ?? "unparsed reply: \(line)"
            message = object["message"] as? String ?? ""
        }
    }

    /// An `AccessDenied` or `QuotaExceeded` (`name`) whose message contains every one of
    /// `fragments`.
    func isError(_ name: String, saying fragments: String...) -> Bool {
        error == "org.shmbus.Error.\(name)" && fragments.allSatisfy { message.contains($0) }
    }
}

/// One raw D-Bus call, as the python helper takes it. Arguments: strings and numbers
/// as they are, `["fd": N]` an inherited descriptor, `["sv": [...]]` an `a{sv}`,
/// `["as": [...]]` a string array, `["u64": N]` a `t`.
struct RawCall {
    var destination: String
    var path: String
    var interface: String
    var member: String
    var signature: String?
    var arguments: [Any] = []
    /// Which of the helper's connections makes the call.
    var connection = 0

    static func registry(_ member: String, _ signature: String? = nil, _ arguments: Any..., connection: Int = 0) -> RawCall {
        RawCall(
            destination: ShmBusProtocol.registryName, path: "/org/shmbus/Registry1", interface: Registry1.name, member: member,
            signature: signature, arguments: arguments, connection: connection)
    }

    static func publisherOpenSegment(owner: String, segment: String) -> RawCall {
        RawCall(destination: owner, path: "/org/shmbus/Publisher1", interface: Publisher1.name, member: "OpenSegment", signature: "s", arguments: [segment])
    }

    var json: [String: Any] {
        var call: [String: Any] = [
            "destination": destination, "path": path, "interface": interface, "member": member, "arguments": arguments, "connection": connection,
        ]
        if let signature { call["signature"] = signature }
        return call
    }

    /// The helper: opens `connections` connections to the bus, makes the calls, prints one
    /// JSON line per reply, and with `hold` prints `held` and keeps the connections until
    /// stdin closes.
    static let helper = """
        import dbus, json, os, sys
        def arg(v):
            if isinstance(v, dict):
                if "fd" in v: return dbus.types.UnixFd(v["fd"])
                if "u64" in v: return dbus.UInt64(v["u64"])
                if "as" in v: return dbus.Array(v["as"], signature="s")
                if "sv" in v: return dbus.Dictionary({k: arg(x) for k, x in v["sv"].items()}, signature="sv")
            if isinstance(v, bool): return dbus.Boolean(v)
            return v
        def plain(v):
            if isinstance(v, dbus.types.UnixFd):
                os.close(v.take()); return "<fd>"
            if isinstance(v, dbus.Dictionary): return {str(k): plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)): return [plain(x) for x in v]
            if isinstance(v, dbus.Boolean): return bool(v)
            if isinstance(v, int): return int(v)
            return str(v)
        plan = json.loads(sys.argv[1])
        connections = [dbus.bus.BusConnection(plan["address"]) for _ in range(plan["connections"])]
        for call in plan["calls"]:
            bus = connections[call["connection"]]
            try:
                method = bus.get_object(call["destination"], call["path"], introspect=False).get_dbus_method(call["member"], call["interface"])
                value = method(*[arg(a) for a in call["arguments"]], signature=call.get("signature"))
                print(json.dumps({"ok": plain(value)}), flush=True)
            except dbus.DBusException as e:
                print(json.dumps({"error": e.get_dbus_name(), "message": e.get_dbus_message()}), flush=True)
        if plan["hold"]:
            print("held", flush=True)
            sys.stdin.read()
        """
}

/// Processes run as other users (and in sandboxes), remembered so that each ends with
/// the test: `stopAll` kills those still running, by their own process IDs.
final class UserProcesses: Sendable {
    private let started = Lock<[ChildProcess]>([])
    static let environment = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"]

    /// Starts `executable` as `user` (`setpriv`, which execs it, as the shell that moves
    /// it into the user's CPU group does: the process ID is the program's), in `sandbox`
    /// if given.
    func spawn(
        as user: String, in sandbox: Sandbox? = nil, _ executable: String, _ arguments: [String], stdin: ChildProcess.Stream = .null,
        stderr: ChildProcess.Stream = .pipe, inheriting: [UnixFileDescriptor] = []
    ) throws -> ChildProcess {
        var command = [executable] + arguments
        var inherited = inheriting
        var info: UnixFileDescriptor?
        if let sandbox {
            info = try sandbox.infoDescriptor()
            if let info { inherited.append(info) }
            // bwrap's --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread*
            // that started it ends: started from a concurrency-pool thread, which the pool
            // may retire, a sandbox died mid-test (a held sandboxed publisher vanished in a
            // loaded CI run). A shell that waits for bwrap is its parent instead, and a
            // SIGKILL of that shell still ends the sandbox.
            command = ["/bin/sh", "-c", "\"$@\"; exit $?", "sh"]
                + sandbox.command(executable == BuiltProducts.path("shmbus") ? Sandbox.shmbus : executable, arguments, info: info)
        }
        // In the user's CPU group (``UserSlices``), as systemd would run it.
        let full = UserSlices.command(AccessUsers.command(command, as: user), in: user)
        let child = try ChildProcess(
            full[0], Array(full.dropFirst()), environment: Self.environment, stdin: stdin, stdout: .pipe, stderr: stderr, inheriting: inherited)
        withExtendedLifetime(info) {}
        started.withLock { $0.append(child) }
        return child
    }

    /// Runs `executable` as `user` to its end.
    func run(
        as user: String, in sandbox: Sandbox? = nil, _ executable: String, _ arguments: [String], stdin: ChildProcess.Stream = .null,
        inheriting: [UnixFileDescriptor] = []
    ) async throws -> Outcome {
        let child = try spawn(as: user, in: sandbox, executable, arguments, stdin: stdin, inheriting: inheriting)
        let (out, err) = try await child.collectOutput()
        let status = await child.exit()
        return Outcome(status: status, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    /// Raw calls from a python3-dbus process of `user` on `address`.
    func call(
        as user: String, in sandbox: Sandbox? = nil, on address: String, _ calls: [RawCall], connections: Int = 1,
        inheriting: [UnixFileDescriptor] = []
    ) async throws -> [BusReply] {
        let outcome = try await run(
            as: user, in: sandbox, "/usr/bin/python3", ["-c", RawCall.helper, Self.plan(address, calls, connections, hold: false)],
            inheriting: inheriting)
        let replies = outcome.stdout.split(separator: "\n").map { BusReply(json: String($0)) }
        guard replies.count == calls.count else { throw SetupFailure("python helper: \(outcome)") }
        return replies
    }

    /// Like ``call``, but the process keeps its connections after the calls, until
    /// `release` is called (then it leaves the bus).
    func callAndHold(
        as user: String, on address: String, _ calls: [RawCall], connections: Int, inheriting: [UnixFileDescriptor] = []
    ) async throws -> (replies: [BusReply], release: @Sendable () async -> Void) {
        let child = try spawn(
            as: user, "/usr/bin/python3", ["-c", RawCall.helper, Self.plan(address, calls, connections, hold: true)], stdin: .pipe,
            inheriting: inheriting)
        var replies: [BusReply] = []
        while let line = try await child.readLine(), line != "held" { replies.append(BusReply(json: line)) }
        guard replies.count == calls.count else {
            child.signal(SIGKILL)
            throw SetupFailure("python helper: \(replies), \(await child.exit())")
        }
        return (replies, {
            child.closeStandardInput()
            _ = await child.exit()
        })
    }

    private static func plan(_ address: String, _ calls: [RawCall], _ connections: Int, hold: Bool) -> String {
        let plan: [String: Any] = ["address": address, "connections": connections, "calls": calls.map(\.json), "hold": hold]
        return String(decoding: (try? JSONSerialization.data(withJSONObject: plan)) ?? Data(), as: UTF8.self)
    }

    /// Kills every process started here that is still running, and reaps it.
    func stopAll() {
        for child in started.withLock({ $0 }) where !child.hasExited {
            child.signal(SIGKILL)
            child.waitUntilExit()
        }
    }
}

/// A segment for a raw `RegisterSegment` (sealed, valid, for `channel`), made by this
/// process and handed to another user's process: whoever sends it on the bus is the
/// caller the registry judges.
func craftedSegment(channel: String, generation: UInt64 = 1, capacity: UInt64 = 16 << 10) throws -> SegmentWriter {
    try SegmentWriter(channel: channel, capacity: capacity, generation: generation, baseSequence: 0)
}

/// The raw `RegisterSegment` of `segment` (inherited under its own descriptor number).
func registerCall(_ channel: String, _ segment: SegmentWriter, options: [String: Any] = [:], connection: Int = 0) -> RawCall {
    .registry(
        "RegisterSegment", "sha{sv}", channel, ["fd": segment.fileDescriptor.withRawValue { Int($0) }], ["sv": options],
        connection: connection)
}
