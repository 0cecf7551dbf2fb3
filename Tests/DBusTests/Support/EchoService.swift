import DBus
import TestSupport
import Testing

/// A service on the shared test bus whose methods echo what they get, on its own
/// connection, so that every value crosses the real daemon twice.
struct EchoService {
    let service: DBusConnection
    let client: DBusConnection
    let export: DBusExport
    let path: ObjectPath = "/org/shmbus/test/Echo"
    static let interfaceName = "org.shmbus.Test.Echo"

    static let interface = DBusInterface(interfaceName) {
        DBusMethod("Echo", inputs: [.init("value", "v")], outputs: [.init("value", "v")]) { call in
            call.arguments
        }
        DBusMethod("Fail", inputs: [.init("name", "s"), .init("message", "s")]) { call in
            let (name, message) = try call.arguments.decode(String.self, String.self)
            throw DBusError(name: name, message: message)
        }
        DBusMethod("Sleep", inputs: [.init("milliseconds", "u")], outputs: [.init("slept", "b")]) { call in
            let ms = try call.arguments.decode(UInt32.self)
            try await Task.sleep(for: .milliseconds(ms))
            return [.boolean(true)]
        }
        DBusMethod("Add", inputs: [.init("a", "i"), .init("b", "i")], outputs: [.init("sum", "i")]) { call in
            let (a, b) = try call.arguments.decode(Int32.self, Int32.self)
            return [.int32(a &+ b)]
        }
        DBusMethod("Bytes", inputs: [.init("count", "u")], outputs: [.init("data", "ay")]) { call in
            let count = try call.arguments.decode(UInt32.self)
            return [.bytes([UInt8](repeating: 0xAB, count: Int(count)))]
        }
        DBusMethod("WrongReply", outputs: [.init("n", "u")]) { _ in [.string("not a uint32")] }
    }

    static func start() async throws -> EchoService {
        let service = try await TestBus.connect()
        let client = try await TestBus.connect()
        let export = try await service.export([interface], at: "/org/shmbus/test/Echo")
        return EchoService(service: service, client: client, export: export)
    }

    /// Calls `method` of the service. The default timeout is generous (libdbus's 25 s
    /// is not, for 10,000 calls in flight in a test process that shares two cores with
    /// the whole suite, perhaps under TSan): only a service that never answers should
    /// time out.
    func call(_ method: String, _ arguments: [DBusValue], timeout: Duration? = .seconds(120)) async throws
        -> [DBusValue]
    {
        try await client.call(
            destination: service.uniqueName, path: path, interface: Self.interfaceName, method: method, arguments,
            timeout: timeout)
    }
}
