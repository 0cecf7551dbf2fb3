import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// Blobs that break docs/BLOBS.md, sent by hand (raw `DBusValue`s) to the generated
/// service, or replied by a hand-written service to the generated proxy: each is refused
/// with `org.shmbus.Error.InvalidBlob` and its reason, and the service answers the next
/// good call.
@Suite struct BlobHostileSenderTests {
    static func memfd(_ count: Int, seals: FileSeals) throws -> UnixFileDescriptor {
        let fd = try UnixFileDescriptor.memfd(name: "hostile")
        try fd.truncate(to: count)
        if !seals.isEmpty { try fd.addSeals(seals) }
        return fd
    }

    static func blob(_ fds: [UnixFileDescriptor], inline: [UInt8] = [], offset: UInt64 = 0, length: UInt64,
                     attributes: [DBusDictEntry] = []) -> DBusValue {
        .structure([
            .dictionary(key: .string, value: .variant, attributes), .bytes(inline), .array(.unixFD, fds.map { .unixFD($0) }),
            .uint64(offset), .uint64(length),
        ])
    }

    /// The case a dbus-python receiver cannot see (PythonBlobInteropTests).
    static let repeatedName = "a repeated attribute"

    static func cases() throws -> [(name: String, value: DBusValue, reason: BlobError.Reason)] {
        let sealed: FileSeals = [.shrink, .grow, .write]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-hostile-\(getpid())").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: 8192))
        defer { unlink(path) }
        let file = try UnixFileDescriptor.open(path, O_RDONLY)
        let pipe = try UnixFileDescriptor.pipe()
        let readable = try memfd(4096, seals: sealed)
        let writeOnly = try withExtendedLifetime(readable) { try UnixFileDescriptor.open("/proc/self/fd/\(readable.rawValue)", O_WRONLY) }
        return [
            ("an unsealed memfd", blob([try memfd(4096, seals: [])], length: 4096), .notSealed),
            ("a memfd that may still grow", blob([try memfd(4096, seals: [.shrink, .write])], length: 4096), .notSealed),
            ("a memfd that may still be written", blob([try memfd(4096, seals: [.shrink, .grow])], length: 4096), .notSealed),
            ("bounds past the end", blob([try memfd(4096, seals: sealed)], offset: 4000, length: 97), .outOfBounds),
            ("an offset that overflows", blob([try memfd(4096, seals: sealed)], offset: .max, length: 2), .outOfBounds),
            ("a regular file, not a memfd", blob([file], length: 100), .notMemfd),
            ("a pipe, not a memfd", blob([pipe.read], length: 100), .notMemfd),
            ("a write-only descriptor", blob([writeOnly], length: 100), .notReadable),
            ("two descriptors", blob([try memfd(4096, seals: sealed), try memfd(4096, seals: sealed)], length: 100), .form),
            ("inline bytes beside a memfd", blob([try memfd(4096, seals: sealed)], inline: [1, 2], length: 100), .form),
            ("a memfd blob of length 0", blob([try memfd(4096, seals: sealed)], length: 0), .form),
            ("an inline length that lies", blob([], inline: [1, 2, 3], length: 4), .form),
            ("an inline blob with an offset", blob([], inline: [1, 2, 3], offset: 1, length: 3), .form),
            ("an invalid attribute name", blob([], inline: [1], length: 1,
                attributes: [DBusDictEntry(key: .string("Content-Type"), value: .variant(.string("x")))]), .attributes),
            // Its only fault is the repetition (no image left incomplete by it).
            (Self.repeatedName, blob([], inline: [1], length: 1, attributes: [
                DBusDictEntry(key: .string("org.example.n"), value: .variant(.int64(1))),
                DBusDictEntry(key: .string("org.example.n"), value: .variant(.int64(2))),
            ]), .attributes),
            ("an image larger than the payload", blob([], inline: [UInt8](repeating: 0, count: 100), length: 100, attributes: [
                DBusDictEntry(key: .string("width"), value: .variant(.int64(10))),
                DBusDictEntry(key: .string("height"), value: .variant(.int64(10))),
                DBusDictEntry(key: .string("pixel-format"), value: .variant(.string("AB24"))),
            ]), .attributes),
            ("a well-known name of the wrong type", blob([], inline: [1], length: 1,
                attributes: [DBusDictEntry(key: .string("content-type"), value: .variant(.int64(3)))]), .attributes),
            ("a well-known name in a variant in the variant", blob([], inline: [1], length: 1,
                attributes: [DBusDictEntry(key: .string("content-type"), value: .variant(.variant(.string("text/plain"))))]), .attributes),
            // Two faults each: the check the document makes first decides the reason.
            ("bad attributes and an offset that overflows", blob([try memfd(4096, seals: sealed)], offset: .max, length: 2,
                attributes: [DBusDictEntry(key: .string("Bad"), value: .variant(.string("x")))]), .attributes),
            ("a pipe at an offset that overflows", blob([pipe.read], offset: .max, length: 2), .notMemfd),
            ("an unsealed memfd past any size", blob([try memfd(4096, seals: [])], offset: 1 << 63, length: 1 << 63), .notSealed),
        ]
    }

    @Test func aServiceRefusesEveryBadBlobWithItsReasonAndAnswersTheNextCall() async throws {
        let server = try await TestBus.connect()
        let client = try await TestBus.connect()
        defer {
            server.close()
            client.close()
        }
        let export = try await BlobEchoService.export(on: server)
        defer { withExtendedLifetime(export) {} }
        for hostile in try Self.cases() {
            do {
                _ = try await client.call(
                    destination: server.uniqueName, path: BlobEchoService.path, interface: BlobEcho1.name, method: "Echo", [hostile.value])
                Issue.record("\(hostile.name): accepted")
            } catch let error as DBusError {
                #expect(error.name == BlobError.invalidBlobName, "\(hostile.name): \(error)")
                #expect(BlobError(error)?.reason == hostile.reason, "\(hostile.name): \(error)")
            }
        }
        let proxy = BlobEcho1.Proxy(connection: client, destination: server.uniqueName, path: BlobEchoService.path)
        #expect(try await proxy.echo(blob: try Blob([UInt8](repeating: 9, count: 1 << 20))).bytes() == [UInt8](repeating: 9, count: 1 << 20))
    }

    @Test func aClientRefusesABadBlobInAReply() async throws {
        let server = try await TestBus.connect()
        let client = try await TestBus.connect()
        defer {
            server.close()
            client.close()
        }
        // A service that answers Echo with an unsealed memfd, then with bounds past the end.
        let replies = [
            Self.blob([try Self.memfd(4096, seals: [])], length: 4096),
            Self.blob([try Self.memfd(4096, seals: [.shrink, .grow, .write])], offset: 1, length: 4096),
        ]
        let counter = Counter()
        var hostile = BlobEcho1.declaration
        for index in hostile.methods.indices { hostile.methods[index].handler = { _ in [replies[counter.next() % replies.count]] } }
        let export = try await server.export([hostile], at: BlobEchoService.path)
        defer { withExtendedLifetime(export) {} }
        let proxy = BlobEcho1.Proxy(connection: client, destination: server.uniqueName, path: BlobEchoService.path)
        for expected in [BlobError.Reason.notSealed, .outOfBounds] {
            do {
                _ = try await proxy.echo(blob: try Blob([1, 2, 3]))
                Issue.record("accepted a reply that should be \(expected)")
            } catch let error as DBusError {
                #expect(BlobError(error)?.reason == expected, "\(error)")
            }
        }
    }
}

/// A count shared with a method handler, which may run on any thread.
final class Counter: Sendable {
    private let value = Lock(0)
    func next() -> Int { value.withLock { value in defer { value += 1 }; return value } }
}
