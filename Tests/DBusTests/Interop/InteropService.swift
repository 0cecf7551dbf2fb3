import DBus
import Foundation
import Glibc
import Locking
import ShmBusSystem
import TestSupport
import Testing

/// A Swift service on the shared test bus for the interop tests: one object manager
/// root implementing `org.shmbus.Test.Interop1` (methods over many types, a signal,
/// read-only and read-write properties, fd passing) with three child objects, two
/// directly below the root and one a level deeper. Every test starts its own, under its
/// own well-known name and root path, because the tests share one bus and run in
/// parallel.
struct InteropService: Sendable {
    static let interfaceName = "org.shmbus.Test.Interop1"
    static let childInterfaceName = "org.shmbus.Test.InteropChild1"
    static let version = "interop-1.0"

    /// What the service's handlers saw and keep.
    final class State: Sendable {
        let label = Lock("initial")
        let ratio = Lock(0.5)
        let tags = Lock(["a", "b"])
        let childNames = Lock(["first", "second", "third"])
        /// The bytes read from the last descriptor passed to `XorFd`.
        let receivedFromDescriptor = Lock<[UInt8]?>(nil)
        /// Tokens passed to `Ready`, in order.
        let ready: AsyncStream<String>
        let readyContinuation: AsyncStream<String>.Continuation

        init() {
            (ready, readyContinuation) = AsyncStream.makeStream(of: String.self)
        }
    }

    let connection: DBusConnection
    /// The service's well-known name, such as `org.shmbus.Test.Interop.t12345`.
    let name: String
    /// The object manager root.
    let root: ObjectPath
    /// The child objects: `root/child0`, `root/child1`, `root/group/child2`.
    let children: [ObjectPath]
    let state: State
    /// The root's export first, then the children's. Keep them alive.
    let exports: [DBusExport]

    var rootExport: DBusExport { exports[0] }

    /// The shared test bus's address, as the tools take it.
    static var address: String {
        get throws { try TestBus.shared.address }
    }

    static func start() async throws -> InteropService {
        let connection = try await TestBus.connect()
        let suffix = TestBus.uniqueSuffix()
        let root = ObjectPath("/org/shmbus/test/interop").appending(escaped: suffix)
        let children = [
            root.appending(escaped: "child0"),
            root.appending(escaped: "child1"),
            root.appending(escaped: "group").appending(escaped: "child2"),
        ]
        let state = State()
        var exports = [try await connection.export([rootInterface(state)], at: root, objectManager: true)]
        for (index, path) in children.enumerated() {
            exports.append(try await connection.export([childInterface(index, state)], at: path))
        }
        let name = "org.shmbus.Test.Interop.\(suffix)"
        let reply = try await connection.requestName(name)
        try #require(reply == .primaryOwner)
        return InteropService(connection: connection, name: name, root: root, children: children, state: state, exports: exports)
    }

    /// A method call from a separate Swift client connection, to check what a tool did.
    func swiftCall(
        _ client: DBusConnection, path: ObjectPath? = nil, interface: String = interfaceName, _ method: String,
        _ arguments: [DBusValue] = []
    ) async throws -> [DBusValue] {
        try await client.call(destination: name, path: path ?? root, interface: interface, method: method, arguments)
    }

    /// A property read from a separate Swift client connection.
    func swiftProperty(_ client: DBusConnection, _ property: String, path: ObjectPath? = nil, interface: String = interfaceName)
        async throws -> DBusValue?
    {
        let reply = try await swiftCall(
            client, path: path, interface: StandardInterfaces.propertiesName, "Get", [.string(interface), .string(property)])
        guard case .variant(let value)? = reply.first, reply.count == 1 else { return nil }
        return value
    }

    // MARK: The declarations

    static func rootInterface(_ state: State) -> DBusInterface {
        DBusInterface(interfaceName) {
            DBusMethod("Concat", inputs: [.init("a", "s"), .init("b", "s")], outputs: [.init("joined", "s")]) { call in
                let (a, b) = try call.arguments.decode(String.self, String.self)
                return [.string(a + b)]
            }
            // Every fixed-size basic type, each transformed so that the reply proves the
            // handler decoded it: y+1, !b, n-1, q+1, i*2, u+1, x-1, t-1, d*2.
            DBusMethod(
                "Numbers",
                inputs: [
                    .init("y", "y"), .init("b", "b"), .init("n", "n"), .init("q", "q"), .init("i", "i"), .init("u", "u"),
                    .init("x", "x"), .init("t", "t"), .init("d", "d"),
                ],
                outputs: [
                    .init("y", "y"), .init("b", "b"), .init("n", "n"), .init("q", "q"), .init("i", "i"), .init("u", "u"),
                    .init("x", "x"), .init("t", "t"), .init("d", "d"),
                ]
            ) { call in
                let (y, b, n, q, i, u, x, t, d) = try call.arguments.decode(
                    UInt8.self, Bool.self, Int16.self, UInt16.self, Int32.self, UInt32.self, Int64.self, UInt64.self, Double.self)
                return [
                    .byte(y &+ 1), .boolean(!b), .int16(n &- 1), .uint16(q &+ 1), .int32(i &* 2), .uint32(u &+ 1),
                    .int64(x &- 1), .uint64(t &- 1), .double(d * 2),
                ]
            }
            // The signature and value of every entry, keys sorted: proves how each
            // variant was decoded.
            DBusMethod("Inspect", inputs: [.init("options", "a{sv}")], outputs: [.init("described", "a{ss}")]) { call in
                guard case .dictionary(_, _, let entries) = call.arguments[0] else {
                    throw DBusError.invalidArgument("expected a{sv}")
                }
                var described: [(String, String)] = []
                for entry in entries {
                    guard case .string(let key) = entry.key, case .variant(let value) = entry.value else {
                        throw DBusError.invalidArgument("expected a{sv}")
                    }
                    described.append((key, "\(value.type.signature) \(render(value))"))
                }
                return [
                    .dictionary(
                        key: .string, value: .string,
                        described.sorted { $0.0 < $1.0 }.map { DBusDictEntry(key: .string($0.0), value: .string($0.1)) })
                ]
            }
            DBusMethod("Options", outputs: [.init("options", "a{sv}")]) { _ in [options] }
            DBusMethod("Swap", inputs: [.init("pair", "(si)")], outputs: [.init("swapped", "(is)")]) { call in
                guard case .structure(let fields) = call.arguments[0], case .string(let s) = fields[0], case .int32(let i) = fields[1]
                else { throw DBusError.invalidArgument("expected (si)") }
                return [.structure([.int32(i), .string(s)])]
            }
            // Each point moved by (+1, +1), and the sum of all coordinates received.
            DBusMethod("Points", inputs: [.init("points", "a(ii)")], outputs: [.init("moved", "a(ii)"), .init("total", "x")]) {
                call in
                guard case .array(_, let items) = call.arguments[0] else { throw DBusError.invalidArgument("expected a(ii)") }
                var moved: [DBusValue] = []
                var total: Int64 = 0
                for item in items {
                    guard case .structure(let f) = item, case .int32(let x) = f[0], case .int32(let y) = f[1] else {
                        throw DBusError.invalidArgument("expected a(ii)")
                    }
                    total += Int64(x) + Int64(y)
                    moved.append(.structure([.int32(x &+ 1), .int32(y &+ 1)]))
                }
                return [.array(.structure([.int32, .int32]), moved), .int64(total)]
            }
            DBusMethod("Reverse", inputs: [.init("items", "as")], outputs: [.init("reversed", "as")]) { call in
                let items = try call.arguments.decode([String].self)
                return [.array(.string, items.reversed().map { .string($0) })]
            }
            // Each byte XORed with key, and the sum of the bytes received.
            DBusMethod("Xor", inputs: [.init("data", "ay"), .init("key", "y")], outputs: [.init("data", "ay"), .init("sum", "u")]) {
                call in
                let (data, key) = try call.arguments.decode([UInt8].self, UInt8.self)
                return [.bytes(data.map { $0 ^ key }), .uint32(data.reduce(0) { $0 + UInt32($1) })]
            }
            // The path with an `item` component appended, the signature wrapped as
            // `a(…)`, and how many complete types the signature has.
            DBusMethod(
                "PathAndSignature", inputs: [.init("path", "o"), .init("signature", "g")],
                outputs: [.init("item", "o"), .init("wrapped", "g"), .init("count", "u")]
            ) { call in
                let (path, signature) = try call.arguments.decode(ObjectPath.self, DBusSignature.self)
                let wrapped = try DBusSignature(validating: "a(\(signature.rawValue))")
                return [.objectPath(path.appending(escaped: "item")), .signature(wrapped), .uint32(UInt32(signature.types.count))]
            }
            // The parent of a path and its number of components.
            DBusMethod("PathInfo", inputs: [.init("path", "o")], outputs: [.init("parent", "o"), .init("depth", "u")]) { call in
                let path = try call.arguments.decode(ObjectPath.self)
                let components = path.rawValue.split(separator: "/")
                let parent = try ObjectPath(validating: "/" + components.dropLast().joined(separator: "/"))
                return [.objectPath(parent), .uint32(UInt32(components.count))]
            }
            // Reads the whole descriptor (pread, so the sender's offset is untouched) and
            // returns a NEW memfd holding every byte XORed with key.
            DBusMethod("XorFd", inputs: [.init("fd", "h"), .init("key", "y")], outputs: [.init("fd", "h"), .init("size", "t")]) {
                call in
                let (fd, key) = try call.arguments.decode(UnixFileDescriptor.self, UInt8.self)
                let content = try readAll(fd)
                state.receivedFromDescriptor.withLock { $0 = content }
                let out = try makeMemfd(content.map { $0 ^ key })
                return [.unixFD(out), .uint64(UInt64(content.count))]
            }
            // Called by a client once its signal match is in place.
            DBusMethod("Ready", inputs: [.init("token", "s")]) { call in
                state.readyContinuation.yield(try call.arguments.decode(String.self))
                return []
            }
            DBusSignal("Changed", arguments: [.init("what", "s"), .init("serial", "u")])
            DBusProperty("Version", type: "s", get: { .string(version) })
            DBusProperty("ChildCount", type: "u", get: { .uint32(3) })
            DBusProperty(
                "Label", type: "s", get: { .string(state.label.withLock { $0 }) },
                set: { value in
                    guard case .string(let s) = value else { throw DBusError.invalidArgument("Label is a string") }
                    state.label.withLock { $0 = s }
                })
            DBusProperty(
                "Ratio", type: "d", get: { .double(state.ratio.withLock { $0 }) },
                set: { value in
                    guard case .double(let d) = value else { throw DBusError.invalidArgument("Ratio is a double") }
                    state.ratio.withLock { $0 = d }
                })
            DBusProperty(
                "Tags", type: "as", get: { .array(.string, state.tags.withLock { $0 }.map { .string($0) }) },
                set: { value in
                    let tags = try [String](dbusValue: value)
                    state.tags.withLock { $0 = tags }
                })
        }
    }

    static func childInterface(_ index: Int, _ state: State) -> DBusInterface {
        DBusInterface(childInterfaceName) {
            DBusMethod("Hello", outputs: [.init("greeting", "s")]) { call in
                [.string("child \(index) at \(call.path)")]
            }
            DBusProperty("Index", type: "u", get: { .uint32(UInt32(index)) })
            DBusProperty(
                "Name", type: "s", get: { .string(state.childNames.withLock { $0[index] }) },
                set: { value in
                    guard case .string(let s) = value else { throw DBusError.invalidArgument("Name is a string") }
                    state.childNames.withLock { $0[index] = s }
                })
        }
    }

    /// The fixed reply of `Options`.
    static let options: DBusValue = {
        let entries: [(String, DBusValue)] = [
            ("name", .string("shmbus")),
            ("count", .uint32(3)),
            ("ratio", .double(0.25)),
            ("tags", .array(.string, [.string("x"), .string("y")])),
            ("point", .structure([.int32(3), .int32(-4)])),
            ("nested", .dictionary(key: .string, value: .variant, [DBusDictEntry(key: .string("deep"), value: .variant(.boolean(true)))])),
            ("path", .objectPath("/org/shmbus")),
            ("blob", .bytes([1, 2, 0xFF])),
        ]
        return .dictionary(key: .string, value: .variant, entries.map { DBusDictEntry(key: .string($0.0), value: .variant($0.1)) })
    }()

    /// A compact, type-independent rendering of a value (types are reported separately).
    static func render(_ value: DBusValue) -> String {
        switch value {
        case .byte(let v): "\(v)"
        case .boolean(let v): "\(v)"
        case .int16(let v): "\(v)"
        case .uint16(let v): "\(v)"
        case .int32(let v): "\(v)"
        case .uint32(let v): "\(v)"
        case .int64(let v): "\(v)"
        case .uint64(let v): "\(v)"
        case .double(let v): "\(v)"
        case .string(let v): "'\(v)'"
        case .objectPath(let v): v.rawValue
        case .signature(let v): v.rawValue
        case .unixFD: "fd"
        case .variant(let v): "<\(render(v))>"
        case .bytes(let v): "[" + v.map { "\($0)" }.joined(separator: ",") + "]"
        case .array(_, let v): "[" + v.map(render).joined(separator: ",") + "]"
        case .dictionary(_, _, let v): "{" + v.map { "\(render($0.key)):\(render($0.value))" }.joined(separator: ",") + "}"
        case .structure(let v): "(" + v.map(render).joined(separator: ",") + ")"
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// The whole content of a descriptor, read with pread from offset 0.
    static func readAll(_ fd: UnixFileDescriptor) throws -> [UInt8] {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else { throw DBusError.failed("fstat: \(errnoText())") }
        var content = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < content.count {
            let n = content.withUnsafeMutableBytes { pread(fd.rawValue, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw DBusError.failed("pread at \(done): \(n < 0 ? "\(errnoText())" : "end of file")") }
            done += n
        }
        return content
    }

    /// A new memfd holding `content` (written with pwrite, so its offset stays at 0).
    static func makeMemfd(_ content: [UInt8]) throws -> UnixFileDescriptor {
        let fd = try UnixFileDescriptor.memfd(name: "shmbus-interop-xor")
        var done = 0
        while done < content.count {
            let n = content.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw DBusError.failed("pwrite: \(errnoText())") }
            done += n
        }
        return fd
    }
}

/// Running the tools no one here wrote.
enum InteropTool {
    static let python = "/usr/bin/python3"

    /// How long a tool waits for a reply (`gdbus --timeout`, `dbus-send --reply-timeout`,
    /// `busctl --timeout`). Only a bound that keeps a broken service from hanging the
    /// test: the service answers in milliseconds, but it runs in the test process,
    /// which shares two cores with the whole suite (and is 5-10x slower under TSan), so
    /// a reply can take seconds. A tool that gives up reports NoReply, which the tests
    /// would take for a wrong answer.
    static let replyTimeoutSeconds = 60

    /// The helper script next to this file.
    static var pythonClient: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("interop_client.py").path
    }

    /// Runs `executable`, expecting exit status 0, and returns its stdout.
    static func output(_ executable: String, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation)
        async throws -> String
    {
        let (status, out, err) = try await BuiltProducts.run(executable, arguments)
        #expect(status == .exited(0), "\(executable) \(arguments) \(status): \(err)", sourceLocation: sourceLocation)
        return out
    }

    /// Runs `executable`, expecting it to fail, and returns its stderr.
    static func failure(_ executable: String, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation)
        async throws -> String
    {
        let (status, out, err) = try await BuiltProducts.run(executable, arguments)
        #expect(status != .exited(0), "\(executable) \(arguments) should fail; printed: \(out)", sourceLocation: sourceLocation)
        return err
    }

    static func trimmed(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// busctl's `--json=short` output as an object.
    static func json(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)",
            sourceLocation: sourceLocation)
    }
}

extension InteropTool {
    /// The messages of `stream` that `keep` accepts, until `done` holds for them;
    /// empty after `timeout`.
    static func messages(
        _ stream: DBusSignalStream, timeout: Duration = .seconds(30), keep: @escaping @Sendable (DBusMessage) -> Bool,
        until done: @escaping @Sendable ([DBusMessage]) -> Bool
    ) async throws -> [DBusMessage] {
        try await withThrowingTaskGroup(of: [DBusMessage]?.self) { group in
            group.addTask {
                var kept: [DBusMessage] = []
                for try await message in stream where keep(message) {
                    kept.append(message)
                    if done(kept) { return kept }
                }
                return kept
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
    }

    /// The first value of `stream`, or nil after `timeout`.
    static func first<T: Sendable>(_ stream: AsyncStream<T>, timeout: Duration = .seconds(30)) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask {
                for await value in stream { return value }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
