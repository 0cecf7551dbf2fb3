import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// Swift's generated BlobEcho1 proxy against the Python implementation of the service
/// (examples/python/blob_echo_service.py, dbus-python and python/shmbus/blob.py), in its
/// own process on a real bus: both forms both ways with their attributes, the Python
/// sender's memfds pass Swift's checks, and every blob Swift's receiver refuses the
/// Python receiver refuses with the same reason. (python/tests/test_blob.py makes the
/// same calls the other way, Python to Swift.)
@Suite struct PythonBlobInteropTests {
    /// The Python service, started; its unique name once it serves.
    static func pythonService(on bus: PrivateBus) async throws -> (ChildProcess, String) {
        let script = BuiltProducts.repositoryRoot.appendingPathComponent("examples/python/blob_echo_service.py").path
        let service = try ChildProcess("/usr/bin/python3", [script, "--bus", bus.address], stdin: .pipe, stdout: .pipe, stderr: .inherit)
        let ready = try await service.readLine() ?? ""
        let words = ready.split(separator: " ")
        try #require(words.count == 2 && words[0] == "ready", "the Python service said \(ready.debugDescription)")
        return (service, String(words[1]))
    }

    /// A private bus, the Python service on it and a connection to the bus, for `body`;
    /// all three end when it returns.
    static func withPythonService(_ body: (PrivateBus, ChildProcess, String, DBusConnection) async throws -> Void) async throws {
        let bus = try PrivateBus()
        defer { bus.stop() }
        let (service, name) = try await pythonService(on: bus)
        defer {
            service.closeStandardInput()
            _ = service.waitUntilExit()
        }
        let connection = try await DBusConnection.connect(to: bus.bus)
        defer { connection.close() }
        try await body(bus, service, name, connection)
    }

    @Test(arguments: [100, 40_000, 3 << 20])
    func bothFormsGoThroughThePythonServiceWithTheirAttributes(length: Int) async throws {
        try await Self.withPythonService { _, _, name, connection in
            let proxy = BlobEcho1.Proxy(connection: connection, destination: name, path: BlobEchoService.path)
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
            var attributes = ChunkAttributes()
            attributes["content-type"] = .string("application/x-test")
            attributes["org.example.n"] = .integer(7)
            attributes.array = ChunkAttributes.ArrayLayout(elementType: .uint8, shape: [length])
            let sent = try Blob(bytes, attributes: attributes)
            #expect(sent.isInline == (length < Blob.defaultThreshold))
            for reply in [try await proxy.echo(blob: sent), try await proxy.copy(blob: sent)] {
                #expect(reply.isInline == sent.isInline && reply.isImmutable)
                #expect(try reply.bytes() == bytes)
                #expect(reply.attributes.names == sent.attributes.names && sent.attributes.names.count == 4)
                #expect(reply.attributes["org.example.n"] == .integer(7) && reply.attributes.array?.shape == [length])
            }
            let seen = try await proxy.inspect(blob: sent)
            let checksum = bytes.withUnsafeBytes { BlobEchoService.checksum($0) }
            #expect(seen.inline == sent.isInline && seen.immutable && seen.length == UInt64(length) && seen.checksum == checksum)
        }
    }

    @Test func thePythonReceiverRefusesWhatSwiftRefusesWithTheSameReasons() async throws {
        try await Self.withPythonService { _, service, name, connection in
            let proxy = BlobEcho1.Proxy(connection: connection, destination: name, path: BlobEchoService.path)
            _ = try await proxy.echoBytes(bytes: [0])
            let descriptors = try Self.openDescriptors(of: service.pid)
            for hostile in try BlobHostileSenderTests.cases() {
                do {
                    let reply = try await connection.call(
                        destination: name, path: BlobEchoService.path, interface: BlobEcho1.name, method: "Echo", [hostile.value])
                    // dbus-python turns an a{sv} into a dict before any Python code sees it,
                    // so the repeated name arrives folded into its last value (docs/BLOBS.md,
                    // "What ShmBus provides"); anything else accepted is a bug.
                    guard hostile.name == BlobHostileSenderTests.repeatedName else {
                        Issue.record("\(hostile.name): accepted by the Python service")
                        continue
                    }
                    let echoed = try Blob(dbusValue: try #require(reply.first))
                    #expect(echoed.attributes.names == ["org.example.n"] && echoed.attributes["org.example.n"] == .integer(2))
                } catch let error as DBusError {
                    #expect(hostile.name != BlobHostileSenderTests.repeatedName, "dbus-python now sees a repeated name: \(error)")
                    #expect(error.name == BlobError.invalidBlobName, "\(hostile.name): \(error)")
                    #expect(BlobError(error)?.reason == hostile.reason, "\(hostile.name): \(error)")
                }
            }
            #expect(try await proxy.echoBytes(bytes: [1, 2, 3]) == [1, 2, 3])
            // It closed every descriptor the refused messages brought.
            #expect(try Self.openDescriptors(of: service.pid) == descriptors)
        }
    }

    /// dbus-python does not check a method's signature; the Python service does, and
    /// answers a value that is not a blob as Swift's generated service does.
    @Test func aValueOfAnotherTypeIsInvalidArgsFromPythonAsFromSwift() async throws {
        try await Self.withPythonService { bus, _, name, connection in
            let server = try await DBusConnection.connect(to: bus.bus)
            defer { server.close() }
            let export = try await BlobEchoService.export(on: server)
            defer { withExtendedLifetime(export) {} }
            let notBlobs: [DBusValue] = [
                .string("a blob?"),
                .structure([.dictionary(key: .string, value: .variant, []), .bytes([1]), .array(.unixFD, []), .int64(0), .uint64(1)]),
                .variant(BlobHostileSenderTests.blob([], inline: [1], length: 1)),
            ]
            for value in notBlobs {
                for destination in [name, server.uniqueName] {
                    do {
                        _ = try await connection.call(
                            destination: destination, path: BlobEchoService.path, interface: BlobEcho1.name, method: "Echo", [value])
                        Issue.record("\(destination) accepted \(value.type)")
                    } catch let error as DBusError {
                        #expect(error.name == DBusError.invalidArgsName, "\(destination), \(value.type): \(error)")
                    }
                }
            }
        }
    }

    static func openDescriptors(of pid: pid_t) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }
}
