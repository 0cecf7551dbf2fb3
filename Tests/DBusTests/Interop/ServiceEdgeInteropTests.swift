import DBus
import Foundation
import Locking
import TestSupport
import Testing

/// A Swift service whose handlers fail in every way a handler can, block until told,
/// or answer with too much, called by tools no one here wrote.
struct EdgeService: Sendable {
    static let interfaceName = "org.shmbus.Test.Edge1"

    /// A plain Swift error (not a DBusError) thrown by a handler.
    struct Boom: Error, CustomStringConvertible {
        var detail: String
        var description: String { "boom: \(detail)" }
    }

    /// Handlers parked in `Wait` until `Release` names them.
    final class Gates: Sendable {
        private let state = Lock<(waiting: [String: CheckedContinuation<Void, Never>], opened: Set<String>)>(([:], []))

        func wait(_ token: String) async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.opened.remove(token) != nil { return true }
                    state.waiting[token] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        }

        /// Opens `token`'s gate; true when a handler was already waiting at it.
        func release(_ token: String) -> Bool {
            let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if let continuation = state.waiting.removeValue(forKey: token) { return continuation }
                state.opened.insert(token)
                return nil
            }
            waiting?.resume()
            return waiting != nil
        }
    }

    let connection: DBusConnection
    let name: String
    let path: ObjectPath
    let export: DBusExport
    let gates: Gates
    /// `Note` calls: the token and whether the caller expected no reply.
    let notes: AsyncStream<String>

    static func start() async throws -> EdgeService {
        let connection = try await TestBus.connect()
        let suffix = TestBus.uniqueSuffix()
        let gates = Gates()
        let (notes, noted) = AsyncStream.makeStream(of: String.self)
        let interface = DBusInterface(interfaceName) {
            DBusMethod("Wait", inputs: [.init("token", "s")], outputs: [.init("token", "s")]) { call in
                let token = try call.arguments.decode(String.self)
                await gates.wait(token)
                return [.string(token)]
            }
            DBusMethod("Release", inputs: [.init("token", "s")], outputs: [.init("was_waiting", "b")]) { call in
                [.boolean(gates.release(try call.arguments.decode(String.self)))]
            }
            DBusMethod("Add", inputs: [.init("a", "i"), .init("b", "i")], outputs: [.init("sum", "i")]) { call in
                let (a, b) = try call.arguments.decode(Int32.self, Int32.self)
                return [.int32(a &+ b)]
            }
            DBusMethod("Fail", inputs: [.init("name", "s"), .init("message", "s")]) { call in
                let (name, message) = try call.arguments.decode(String.self, String.self)
                throw DBusError(name: name, message: message)
            }
            DBusMethod("Crash") { _ in throw Boom(detail: "kaput") }
            DBusMethod("BadName") { _ in throw DBusError(name: "not an error name", message: "kept message") }
            DBusMethod("Wrong", outputs: [.init("text", "s")]) { _ in [.uint32(7)] }
            DBusMethod("Huge", inputs: [.init("size", "u")], outputs: [.init("data", "ay")]) { call in
                let size: UInt32 = try call.arguments.decode(UInt32.self)
                return [.bytes([UInt8](repeating: 0xAB, count: Int(size)))]
            }
            // Every byte XORed with key, a word at a time (the test build is not
            // optimized), and the size received.
            DBusMethod("Xor", inputs: [.init("data", "ay"), .init("key", "y")], outputs: [.init("data", "ay"), .init("size", "t")]) {
                call in
                var (data, key) = try call.arguments.decode([UInt8].self, UInt8.self)
                let pattern = UInt64(key) &* 0x0101_0101_0101_0101
                data.withUnsafeMutableBytes { raw in
                    let words = raw.count / 8
                    for i in 0..<words {
                        let word = raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) ^ pattern
                        raw.storeBytes(of: word, toByteOffset: i * 8, as: UInt64.self)
                    }
                    for i in words * 8..<raw.count { raw[i] ^= key }
                }
                return [.bytes(data), .uint64(UInt64(data.count))]
            }
            DBusMethod("Note", inputs: [.init("token", "s")]) { call in
                noted.yield("\(try call.arguments.decode(String.self)) no-reply=\(call.message.noReplyExpected)")
                return []
            }
        }
        let path = ObjectPath("/org/shmbus/test/edge").appending(escaped: suffix)
        let export = try await connection.export([interface], at: path)
        let name = "org.shmbus.Test.Edge.\(suffix)"
        try #require(try await connection.requestName(name) == .primaryOwner)
        return EdgeService(connection: connection, name: name, path: path, export: export, gates: gates, notes: notes)
    }

    func dbusSend(_ method: String, _ arguments: [String] = [], reply: Bool = true) throws -> [String] {
        ["--bus=\(try InteropService.address)", "--type=method_call"] + (reply ? ["--print-reply", "--reply-timeout=\(InteropTool.replyTimeoutSeconds * 1000)"] : [])
            + ["--dest=\(name)", path.rawValue, "\(Self.interfaceName).\(method)"] + arguments
    }

    func gdbus(_ method: String, _ arguments: [String] = []) throws -> [String] {
        [
            "call", "--address", try InteropService.address, "--dest", name, "--object-path", path.rawValue, "--timeout", "\(InteropTool.replyTimeoutSeconds)",
            "--method", "\(Self.interfaceName).\(method)", "--",
        ] + arguments
    }

    func busctl(_ arguments: [String], json: Bool = false) throws -> [String] {
        ["--address=\(try InteropService.address)", "--timeout=\(InteropTool.replyTimeoutSeconds)"] + (json ? ["--json=short"] : []) + ["--"] + arguments
    }
}

@Suite struct ServiceEdgeInteropTests {
    @Test func handlerErrorsReachToolsByName() async throws {
        let service = try await EdgeService.start()
        func dbusSendError(_ method: String, _ arguments: [String] = []) async throws -> String {
            InteropTool.trimmed(try await InteropTool.failure("dbus-send", try service.dbusSend(method, arguments)))
        }
        // A DBusError thrown by the handler: its own name and message, to three tools.
        let name = "org.shmbus.Test.Error.Custom"
        #expect(
            try await dbusSendError("Fail", ["string:\(name)", "string:went wrong ✓"]) == "Error \(name): went wrong ✓")
        let gdbus = try await InteropTool.failure("gdbus", try service.gdbus("Fail", ["'\(name)'", "'went wrong ✓'"]))
        #expect(gdbus.contains("GDBus.Error:\(name): went wrong ✓"), "\(gdbus)")
        let busctl = try await InteropTool.failure(
            "busctl", try service.busctl(["call", service.name, service.path.rawValue, EdgeService.interfaceName, "Fail", "ss", name, "went wrong ✓"]))
        #expect(InteropTool.trimmed(busctl) == "Call failed: went wrong ✓", "\(busctl)")

        // Any other error becomes Failed, with its description.
        #expect(try await dbusSendError("Crash") == "Error org.freedesktop.DBus.Error.Failed: boom: kaput")
        // An error name that is not valid on the bus: Failed, keeping the message.
        #expect(try await dbusSendError("BadName") == "Error org.freedesktop.DBus.Error.Failed: kept message")
        // A reply that does not match the declaration is never sent as such.
        #expect(
            try await dbusSendError("Wrong") == "Error org.freedesktop.DBus.Error.Failed: Wrong produced a reply of the wrong type")

        // And the service answers the next call.
        let out = try await InteropTool.output("dbus-send", try service.dbusSend("Add", ["int32:2", "int32:40"]))
        #expect(out.split(separator: "\n").last.map { InteropTool.trimmed(String($0)) } == "int32 42", "\(out)")
    }

    @Test func anOversizedReplyIsAnErrorAndTheServiceLivesOn() async throws {
        let service = try await EdgeService.start()
        let limit = DBusLimits.maximumArrayLength
        let err = try await InteropTool.failure("dbus-send", try service.dbusSend("Huge", ["uint32:\(limit + 1)"]))
        #expect(
            InteropTool.trimmed(err)
                == "Error org.freedesktop.DBus.Error.LimitsExceeded: array is \(limit + 1) bytes; a D-Bus array may be at most \(limit) bytes (64 MiB)")
        let out = try await InteropTool.output(
            "busctl", try service.busctl(["call", service.name, service.path.rawValue, EdgeService.interfaceName, "Huge", "u", "3"], json: true))
        let reply = try InteropTool.json(out)
        #expect(reply["type"] as? String == "ay")
        #expect(((reply["data"] as? [Any])?.first as? [NSNumber])?.map(\.intValue) == [0xAB, 0xAB, 0xAB], "\(out)")
    }

    @Test func blockedHandlersDoNotHoldUpAGLibClientsOtherCalls() async throws {
        let service = try await EdgeService.start()
        let peer = try GioPeer("gates", [try InteropService.address, service.name, service.path.rawValue])
        let (status, out, err) = try await peer.finish()
        #expect(status == .exited(0), "\(err)")
        // Three handlers blocked while 300 other calls went through; released in
        // another order, each replied as soon as it was released.
        #expect(
            out.split(separator: "\n").map(String.init) == [
                "sent a", "sent b", "sent c", "release c", "waited c", "release a", "waited a", "release b", "waited b",
                "adds 300", "verdict ok",
            ], "\(out)\n\(err)")
    }

    @Test func sixteenMebibytesThroughGLib() async throws {
        let service = try await EdgeService.start()
        let size = 16 << 20
        let peer = try GioPeer("big", [try InteropService.address, service.name, service.path.rawValue, EdgeService.interfaceName, "\(size)"])
        let (status, out, err) = try await peer.finish()
        #expect(status == .exited(0), "\(err)")
        let verdict = out.split(separator: "\n").first.map(String.init) ?? ""
        #expect(verdict == "verdict ok \(size)", "\(out)\n\(err)")
    }

    @Test func callsExpectingNoReplyStillRunTheirHandlers() async throws {
        let service = try await EdgeService.start()
        // GDBus sends a call without a callback with NO_REPLY_EXPECTED.
        let token = TestBus.uniqueSuffix()
        let peer = try GioPeer(
            "noreply", [try InteropService.address, service.name, service.path.rawValue, EdgeService.interfaceName, "Note", token])
        let (status, out, err) = try await peer.finish()
        #expect(status == .exited(0) && out == "sent \(token)\n", "\(out) \(err)")
        #expect(await InteropTool.first(service.notes) == "\(token) no-reply=true")
        // dbus-send without --print-reply sends an ordinary call and exits at once:
        // the reply goes to a connection that is gone.
        let other = TestBus.uniqueSuffix()
        _ = try await InteropTool.output("dbus-send", try service.dbusSend("Note", ["string:\(other)"], reply: false))
        #expect(await InteropTool.first(service.notes) == "\(other) no-reply=false")
        let sum = try await InteropTool.output("dbus-send", try service.dbusSend("Add", ["int32:-2", "int32:-40"]))
        #expect(sum.split(separator: "\n").last.map { InteropTool.trimmed(String($0)) } == "int32 -42", "\(sum)")
    }

    @Test func peerAnswersToolsAndAgreesWithTheMachineID() async throws {
        let service = try await EdgeService.start()
        let machineID = try #require(
            ["/etc/machine-id", "/var/lib/dbus/machine-id"].lazy.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first)
        let expected = InteropTool.trimmed(machineID)
        #expect(expected.count == 32)
        // busctl, on the exported object and on a path with no object at all.
        for path in [service.path.rawValue, "/no/object/here"] {
            let out = try await InteropTool.output(
                "busctl", try service.busctl(["call", service.name, path, StandardInterfaces.peerName, "GetMachineId"]))
            #expect(InteropTool.trimmed(out) == "s \"\(expected)\"", "\(path): \(out)")
        }
        let ping = try await InteropTool.output(
            "gdbus",
            [
                "call", "--address", try InteropService.address, "--dest", service.name, "--object-path", service.path.rawValue,
                "--timeout", "\(InteropTool.replyTimeoutSeconds)", "--method", "\(StandardInterfaces.peerName).Ping",
            ])
        #expect(InteropTool.trimmed(ping) == "()")
        // Without an INTERFACE field the call reaches the export's own Peer.
        let client = try await TestBus.connect()
        let reply = try await client.call(destination: service.name, path: service.path, interface: nil, method: "GetMachineId")
        #expect(reply == [.string(expected)])
    }

    @Test func aCallWithADanglingFdGetsAnError() async throws {
        let service = try await InteropService.start()
        let client = try await TestBus.connect()
        // GLib sends XorFd(h, y) whose handle points past the message's fd list;
        // dbus-daemon forwards it, and libdbus hands the service no descriptor.
        let peer = try GioPeer(
            "badfd", [try InteropService.address, service.name, service.root.rawValue, InteropService.interfaceName, "XorFd"])
        let (status, out, err) = try await peer.finish()
        #expect(status == .exited(0), "\(err)")
        #expect(InteropTool.trimmed(out) == "error \(DBusError.invalidArgsName)")
        // The service lives on.
        #expect(try await service.swiftCall(client, "Concat", [.string("still "), .string("here")]) == [.string("still here")])
    }
}
