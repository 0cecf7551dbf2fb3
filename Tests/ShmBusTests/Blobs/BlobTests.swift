import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// Blobs made, read and sent through a generated contract (`org.shmbus.testing.BlobEcho1`)
/// over a real dbus-daemon: both forms both ways, attributes, zero-copy views, files.
@Suite struct BlobTests {
    static func pattern(_ count: Int, seed: UInt8 = 7) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ $0 >> 11) }
    }

    @Test func smallBytesGoInlineAndLargeOnesAsASealedReadOnlyMemfd() throws {
        let small = try Blob(Self.pattern(100))
        #expect(small.isInline && small.length == 100 && small.isImmutable)
        #expect(try small.bytes() == Self.pattern(100))

        let large = try Blob(Self.pattern(Blob.defaultThreshold))
        #expect(!large.isInline && large.length == Blob.defaultThreshold && large.isImmutable)
        guard case .memfd(let fd, let offset, _) = large.storage else { Issue.record("not a memfd"); return }
        #expect(offset == 0 && fd.isMemfd)
        #expect(try fd.seals() == [.shrink, .grow, .write, .seal])
        #expect(try large.bytes() == Self.pattern(Blob.defaultThreshold))
        // Sealed: nobody, this process included, can write or resize it any more.
        #expect(throws: SystemError.self) { try fd.truncate(to: 1) }
        #expect(throws: SystemError.self) { try fd.writeAll([UInt8(1)]) }

        #expect(try Blob(Self.pattern(10), threshold: 0).isInline == false)
        #expect(try Blob(Self.pattern(1 << 20), threshold: .max).isInline)
    }

    @Test func writtenInPlaceInBothForms() throws {
        for (length, threshold) in [(4096, Blob.defaultThreshold), (3 << 20, Blob.defaultThreshold)] {
            let blob = try Blob(length: length, threshold: threshold) { buffer in
                for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7 &+ i >> 11) }
            }
            #expect(blob.isInline == (length < threshold))
            #expect(try blob.bytes() == Self.pattern(length))
        }
        struct Refused: Error {}
        #expect(throws: Refused.self) { _ = try Blob(length: 1 << 20) { _ in throw Refused() } }
    }

    @Test func fromAFileCopiedInTheKernel() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-blob-\(getpid())-\(TestBus.uniqueSuffix())").path
        defer { unlink(path) }
        let contents = Self.pattern(5 << 20 + 123)
        #expect(FileManager.default.createFile(atPath: path, contents: Data(contents)))
        let whole = try Blob(contentsOf: path)
        #expect(!whole.isInline && whole.length == contents.count)
        #expect(try whole.bytes() == contents)
        let window = try Blob(contentsOf: path, offset: 4097, length: 2 << 20)
        #expect(try window.bytes() == Array(contents[4097..<(4097 + (2 << 20))]))
        let small = try Blob(contentsOf: path, offset: 10, length: 100)
        #expect(small.isInline)
        #expect(try small.bytes() == Array(contents[10..<110]))
        #expect(throws: BlobError.self) { try Blob(contentsOf: path, offset: contents.count - 10, length: 1 << 20) }
    }

    @Test func aWindowAtAnUnalignedOffsetMapsTheRightBytes() throws {
        let contents = Self.pattern(3 * 4096 + 77)
        let fd = try UnixFileDescriptor.memfd(name: "blob-test")
        _ = try contents.withUnsafeBytes { try fd.write($0) }
        try fd.addSeals([.shrink, .grow, .write])
        let value = DBusValue.structure([
            .dictionary(key: .string, value: .variant, []), .bytes([]), .array(.unixFD, [.unixFD(fd)]), .uint64(5000), .uint64(4000),
        ])
        let blob = try Blob(dbusValue: value)
        let view = try blob.map()
        view.prefetch()
        #expect(view.array == Array(contents[5000..<9000]))
    }

    /// FORMAT.md's rules for entries of unknown types hold for a blob's: a name appears
    /// once counting them, and a well-known name has its row's type or the blob is refused.
    @Test(arguments: [
        [("org.example.later", DBusValue.boolean(true)), ("org.example.later", .int64(1))],
        [("width", .int32(2)), ("height", .int64(1)), ("pixel-format", .string("AB24"))],
    ])
    func anUnknownTypeHidesNoRepeatedNameAndNoWellKnownOne(entries: [(String, DBusValue)]) throws {
        let value = DBusValue.structure([
            .dictionary(key: .string, value: .variant, entries.map { DBusDictEntry(key: .string($0.0), value: .variant($0.1)) }),
            .bytes([1, 2, 3, 4, 5, 6, 7, 8]), .array(.unixFD, []), .uint64(0), .uint64(8),
        ])
        let error = #expect(throws: DBusError.self) { try Blob(dbusValue: value) }
        #expect(error?.name == BlobError.invalidBlobName && error?.message.hasPrefix("attributes: ") == true, "\(String(describing: error))")
    }

    @Test func attributesOfTypesThisVersionDoesNotKnowAreSkippedAndTheRestKeepTheirOrder() throws {
        let value = DBusValue.structure([
            .dictionary(
                key: .string, value: .variant,
                [
                    DBusDictEntry(key: .string("width"), value: .variant(.int64(2))),
                    DBusDictEntry(key: .string("org.example.later"), value: .variant(.boolean(true))),
                    DBusDictEntry(key: .string("pixel-format"), value: .variant(.string("AB24"))),
                    DBusDictEntry(key: .string("height"), value: .variant(.int64(1))),
                ]),
            .bytes([1, 2, 3, 4, 5, 6, 7, 8]), .array(.unixFD, []), .uint64(0), .uint64(8),
        ])
        let blob = try Blob(dbusValue: value)
        #expect(blob.attributes.names == ["width", "pixel-format", "height"])
        #expect(blob.attributes.image?.width == 2 && blob.attributes.image?.height == 1)
        #expect(blob.dbusValue == .structure([
            .dictionary(
                key: .string, value: .variant,
                [
                    DBusDictEntry(key: .string("width"), value: .variant(.int64(2))),
                    DBusDictEntry(key: .string("pixel-format"), value: .variant(.string("AB24"))),
                    DBusDictEntry(key: .string("height"), value: .variant(.int64(1))),
                ]),
            .bytes([1, 2, 3, 4, 5, 6, 7, 8]), .array(.unixFD, []), .uint64(0), .uint64(8),
        ]))
    }

    @Test func bothFormsGoThroughAGeneratedContractBothWaysWithAttributes() async throws {
        let server = try await TestBus.connect()
        let client = try await TestBus.connect()
        defer {
            server.close()
            client.close()
        }
        let export = try await BlobEchoService.export(on: server)
        defer { withExtendedLifetime(export) {} }
        let proxy = BlobEcho1.Proxy(connection: client, destination: server.uniqueName, path: BlobEchoService.path)
        // Not in sorted order: a blob keeps the sender's.
        let attributes = ChunkAttributes(["org.example.frame": .integer(42), "content-type": .string("application/octet-stream")])
        for size in [4096, 1 << 20, 20 << 20] {
            let sent = try Blob(Self.pattern(size, seed: UInt8(size & 0xFF)), attributes: attributes)
            let echoed = try await proxy.echo(blob: sent)
            let copied = try await proxy.copy(blob: sent)
            for reply in [echoed, copied] {
                #expect(reply.isInline == sent.isInline, "\(size)")
                #expect(reply.attributes == attributes)
                #expect(try reply.bytes() == Self.pattern(size, seed: UInt8(size & 0xFF)), "\(size)")
            }
            if case .memfd(let sentFD, _, _) = sent.storage, case .memfd(let echoedFD, _, _) = echoed.storage,
                case .memfd(let copiedFD, _, _) = copied.storage
            {
                // The echo is the same file, back through the bus; the copy is the service's own, sealed.
                let same = try sentFD.status().st_ino == echoedFD.status().st_ino
                let other = try sentFD.status().st_ino != copiedFD.status().st_ino
                #expect(same && other)
                #expect(try copiedFD.seals().contains([.shrink, .grow, .write]), "the service sealed its reply")
            }
            let seen = try await proxy.inspect(blob: sent)
            let expected = try sent.map().withUnsafeBytes { BlobEchoService.checksum($0) }
            #expect(seen.inline == sent.isInline && seen.immutable && seen.length == UInt64(size) && seen.checksum == expected)
            #expect(seen.attributes["org.example.frame"] == DBusVariant(Int64(42)))
        }
        // The inline form needs no descriptor passing: an empty blob too.
        let empty = try await proxy.echo(blob: try Blob([]))
        #expect(empty.isInline && empty.length == 0)
    }

    @Test func introspectionShowsTheBlobType() async throws {
        let server = try await TestBus.connect()
        let client = try await TestBus.connect()
        defer {
            server.close()
            client.close()
        }
        let export = try await BlobEchoService.export(on: server)
        defer { withExtendedLifetime(export) {} }
        let reply = try await client.call(
            destination: server.uniqueName, path: BlobEchoService.path, interface: "org.freedesktop.DBus.Introspectable", method: "Introspect")
        let xml = try reply.decode(String.self)
        #expect(xml.contains("<arg name=\"blob\" type=\"(a{sv}ayahtt)\" direction=\"in\"/>"), "\(xml)")
        #expect(Blob.dbusType.signature == "(a{sv}ayahtt)")
    }
}
