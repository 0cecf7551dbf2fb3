import CShmBusLinux
import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// Malformed and hostile calls: each gets its named error, and the daemon answers the
/// next good call.
@Suite struct HostileCallTests {
    struct Case: CustomStringConvertible {
        var name: String
        var method: String
        var arguments: (Fixtures) throws -> [DBusValue]
        var expected: String
        var description: String { name }
    }

    /// Descriptors and segments the cases use, made fresh for the run.
    final class Fixtures {
        let valid: ChannelWriter
        let owned: String
        let otherChannelSegment: String
        let unrelated: ChannelWriter
        let ownedByOther: String

        init(valid: ChannelWriter, owned: String, otherChannelSegment: String, unrelated: ChannelWriter, ownedByOther: String) {
            self.valid = valid
            self.owned = owned
            self.otherChannelSegment = otherChannelSegment
            self.unrelated = unrelated
            self.ownedByOther = ownedByOther
        }

        // Lent, not duplicated: libdbus sends its own duplicate.
        func fd(_ writer: ChannelWriter) throws -> DBusValue { .unixFD(writer.current.fileDescriptor) }
    }

    static let invalid = "org.shmbus.Error.InvalidArgument"
    static let notSealed = "org.shmbus.Error.NotSealed"
    static let bad = "org.shmbus.Error.BadSegment"
    static let notFound = "org.shmbus.Error.NotFound"
    static let denied = "org.shmbus.Error.AccessDenied"
    static let busy = "org.shmbus.Error.ChannelBusy"
    static let args = "org.freedesktop.DBus.Error.InvalidArgs"

    static func memfd(size: Int, seals: Int32?, contents: [UInt8] = []) throws -> DBusValue {
        let fd = try Memfd.create(name: "hostile", size: size)
        if !contents.isEmpty { _ = contents.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, 0) } }
        if let seals { try Memfd.addSeals(seals, to: fd) }
        return .unixFD(fd)
    }

    static func pipeEnd() -> DBusValue {
        // The write end closes when the pair goes out of scope.
        let pipe = try! UnixFileDescriptor.pipe()
        return .unixFD(pipe.read)
    }

    static func register(_ channel: String, _ fd: DBusValue, _ options: [String: DBusValue] = [:]) -> [DBusValue] {
        [.string(channel), fd, .dictionary(key: .string, value: .variant, options.map { DBusDictEntry(key: .string($0.key), value: .variant($0.value)) })]
    }

    static var cases: [Case] { [
        Case(name: "RegisterSegment with one argument", method: "RegisterSegment", arguments: { _ in [.string("x")] }, expected: args),
        Case(name: "RegisterSegment with a string for the fd", method: "RegisterSegment", arguments: { _ in [.string("x"), .string("3"), .dictionary(key: .string, value: .variant, [])] }, expected: args),
        Case(name: "RegisterSegment with options as a{ss}", method: "RegisterSegment", arguments: { f in [.string("x"), try f.fd(f.valid), .dictionary(key: .string, value: .string, [])] }, expected: args),
        Case(name: "ListSegments with a number", method: "ListSegments", arguments: { _ in [.uint32(1)] }, expected: args),
        Case(name: "Lookup with one argument", method: "Lookup", arguments: { _ in [.string("x")] }, expected: args),
        Case(name: "OpenSegment without arguments", method: "OpenSegment", arguments: { _ in [] }, expected: args),
        Case(name: "UnregisterSegment with a path", method: "UnregisterSegment", arguments: { _ in [.objectPath("/x")] }, expected: args),
        Case(name: "an unknown method", method: "DropEverything", arguments: { _ in [] }, expected: "org.freedesktop.DBus.Error.UnknownMethod"),
        Case(name: "an empty channel name", method: "RegisterSegment", arguments: { f in register("", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "'..' in a channel name", method: "RegisterSegment", arguments: { f in register("a/../b", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "a 201-character channel name", method: "RegisterSegment", arguments: { f in register(String(repeating: "c", count: 201), try f.fd(f.valid)) }, expected: invalid),
        Case(name: "an empty component", method: "RegisterSegment", arguments: { f in register("a//b", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "a leading slash", method: "RegisterSegment", arguments: { f in register("/abs", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "a space in a channel name", method: "RegisterSegment", arguments: { f in register("a b", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "non-ASCII in a channel name", method: "RegisterSegment", arguments: { f in register("caméra", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "an unknown option", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["colour": .string("red")]) }, expected: invalid),
        Case(name: "persistent as a string", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["persistent": .string("yes")]) }, expected: invalid),
        Case(name: "ttl without persistent", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["ttl": .uint64(5)]) }, expected: invalid),
        Case(name: "ttl as uint32", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["persistent": .boolean(true), "ttl": .uint32(5)]) }, expected: invalid),
        Case(name: "replaces as a number", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["replaces": .uint64(1)]) }, expected: invalid),
        Case(name: "a doorbell that is a pipe", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid), ["doorbell": pipeEnd()]) }, expected: invalid),
        Case(name: "a regular file", method: "RegisterSegment", arguments: { _ in
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-hostile-\(getpid())").path
            _ = FileManager.default.createFile(atPath: path, contents: Data(count: 65536))
            defer { unlink(path) }
            return register("hostile", .unixFD(UnixFileDescriptor(taking: open(path, O_RDONLY | O_CLOEXEC))))
        }, expected: invalid),
        Case(name: "a pipe", method: "RegisterSegment", arguments: { _ in register("hostile", pipeEnd()) }, expected: invalid),
        Case(name: "a socket", method: "RegisterSegment", arguments: { _ in register("hostile", .unixFD(UnixFileDescriptor(taking: socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)))) }, expected: invalid),
        Case(name: "an unsealed memfd", method: "RegisterSegment", arguments: { _ in register("hostile", try memfd(size: 65536, seals: nil)) }, expected: notSealed),
        Case(name: "a memfd without F_SEAL_FUTURE_WRITE", method: "RegisterSegment", arguments: { _ in
            register("hostile", try memfd(size: 65536, seals: shmbus_F_SEAL_SHRINK | shmbus_F_SEAL_GROW | shmbus_F_SEAL_SEAL))
        }, expected: notSealed),
        Case(name: "a memfd without F_SEAL_SEAL", method: "RegisterSegment", arguments: { _ in
            register("hostile", try memfd(size: 65536, seals: shmbus_F_SEAL_SHRINK | shmbus_F_SEAL_GROW | shmbus_F_SEAL_FUTURE_WRITE))
        }, expected: notSealed),
        Case(name: "a too-small memfd", method: "RegisterSegment", arguments: { _ in register("hostile", try memfd(size: 4096, seals: Memfd.segmentSeals)) }, expected: bad),
        Case(name: "a garbage header", method: "RegisterSegment", arguments: { _ in
            register("hostile", try memfd(size: 65536, seals: Memfd.segmentSeals, contents: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        }, expected: bad),
        Case(name: "a header for another channel", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.unrelated)) }, expected: bad),
        Case(name: "a header larger than its file", method: "RegisterSegment", arguments: { f in
            let reader = try SegmentReader(fd: try Memfd.reopenReadOnly(f.unrelated.current.fileDescriptor))
            let head = Array(UnsafeRawBufferPointer(start: reader.mapping.base, count: 8192))
            return register("other/chan", try memfd(size: 8192, seals: Memfd.segmentSeals, contents: head))
        }, expected: bad),
        Case(name: "replacing a segment that does not exist", method: "RegisterSegment", arguments: { f in
            register("hostile/new", try f.fd(try ChannelWriter(channel: "hostile/new", capacity: 65536)), ["replaces": .string(String(repeating: "0", count: 32))])
        }, expected: notFound),
        Case(name: "registering on another connection's channel", method: "RegisterSegment", arguments: { f in
            register("owned/by/other", try f.fd(try ChannelWriter(channel: "owned/by/other", capacity: 65536)))
        }, expected: denied),
        Case(name: "unregistering another connection's segment", method: "UnregisterSegment", arguments: { f in [.string(f.ownedByOther)] }, expected: denied),
        Case(name: "unregistering a segment that does not exist", method: "UnregisterSegment", arguments: { _ in [.string("nope")] }, expected: notFound),
        Case(name: "opening a segment that does not exist", method: "OpenSegment", arguments: { _ in [.string(String(repeating: "f", count: 32))] }, expected: notFound),
        Case(name: "looking up an unknown channel", method: "Lookup", arguments: { _ in [.string("no/such"), .string("k")] }, expected: notFound),
        Case(name: "looking up a missing key", method: "Lookup", arguments: { _ in [.string("hostile"), .string("missing")] }, expected: notFound),
        Case(name: "listing an unknown channel", method: "ListSegments", arguments: { _ in [.string("no/such")] }, expected: notFound),
        Case(name: "registering the same segment twice", method: "RegisterSegment", arguments: { f in register("hostile", try f.fd(f.valid)) }, expected: invalid),
        Case(name: "replacing a segment of another channel", method: "RegisterSegment", arguments: { f in
            register("hostile", try f.fd(try ChannelWriter(channel: "hostile", capacity: 65536)), ["replaces": .string(f.otherChannelSegment)])
        }, expected: invalid),
        Case(name: "a second active segment without replaces", method: "RegisterSegment", arguments: { f in
            register("hostile", try f.fd(try ChannelWriter(channel: "hostile", capacity: 65536)))
        }, expected: busy),
    ] }

    @Test func everyHostileCallGetsItsNamedErrorAndTheDaemonGoesOn() async throws {
        #expect(Self.cases.count >= 30)
        let fixture = try await RegistryFixture()
        let caller = try await fixture.connect()
        let other = try await fixture.client()
        let callerClient = RegistryClient(connection: caller)
        // The caller owns "hostile" and "second"; the other connection owns "owned/by/other".
        let valid = try makeSegment(channel: "hostile", chunks: [("k", [1])])
        let owned = try await callerClient.registerSegment(channel: "hostile", fd: valid.current.fileDescriptor).segment
        let second = try makeSegment(channel: "second", chunks: [])
        let secondName = try await callerClient.registerSegment(channel: "second", fd: second.current.fileDescriptor).segment
        let theirs = try makeSegment(channel: "owned/by/other", chunks: [])
        let theirName = try await other.registerSegment(channel: "owned/by/other", fd: theirs.current.fileDescriptor).segment
        let fixtures = Fixtures(
            valid: valid, owned: owned, otherChannelSegment: secondName,
            unrelated: try makeSegment(channel: "other/chan", chunks: [], capacity: 16384), ownedByOther: theirName)

        for hostile in Self.cases {
            let arguments = try hostile.arguments(fixtures)
            do {
                _ = try await caller.call(
                    destination: ShmBusProtocol.registryName, path: ShmBusProtocol.registryPath,
                    interface: Registry1.name, method: hostile.method, arguments)
                Issue.record("\(hostile): the call succeeded")
            } catch let error as DBusError {
                #expect(error.name == hostile.expected, "\(hostile): got \(error.name): \(error.message)")
                #expect(!error.message.isEmpty, "\(hostile): the error needs a message")
            }
            // The daemon answers the next good call.
            #expect(try await callerClient.channels().count == 3, "after \(hostile)")
        }
    }
}
