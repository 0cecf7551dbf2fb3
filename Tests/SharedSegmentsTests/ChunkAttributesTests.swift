import CShmBusLinux
import Foundation
@testable import SharedSegments
import ShmBusSystem
import Testing

/// docs/FORMAT.md, "Attributes": the document's record, the block's encoding, and
/// every check, on the writer's side and on the reader's.
@Suite struct ChunkAttributesTests {
    typealias A = ChunkAttributes
    static let documented = A(["content-type": .string("application/x-array"), "dtype": .string("float32"), "shape": .integers([2, 3])])

    /// The bytes of "A real record with attributes", the `NNN:` offsets dropped.
    static func documentedRecord() throws -> [UInt8] {
        let lines = try FormatDocumentTests.section("### A real record with attributes", in: try FormatDocumentTests.document())
        let marker = try #require(lines.firstIndex { $0.hasPrefix("<!-- attributes-vector") })
        let open = try #require(lines[marker...].firstIndex { $0.hasPrefix("```") })
        let close = try #require(lines[(open + 1)...].firstIndex { $0.hasPrefix("```") })
        var bytes: [UInt8] = []
        for line in lines[(open + 1)..<close] {
            let parts = line.split(separator: ":", maxSplits: 1)
            #expect(Int(parts[0]) == bytes.count, "the line at \(parts[0]) follows \(bytes.count) bytes")
            bytes += try FormatDocumentTests.hexBytes(parts[1])
        }
        return bytes
    }

    @Test func theDocumentedRecordIsWhatTheWriterWritesAndTheReaderReads() throws {
        let documented = try Self.documentedRecord()
        #expect(documented.count == 168)
        let block = try Self.documented.encodedBlock(payloadLength: 24)
        #expect(block.count == 96)
        let scratch = try Memfd.create(name: "format-attributes", size: 8192)
        defer { try? scratch.close() }
        let mapping = try MemoryMapping(fd: scratch, length: 8192, writable: true)
        let key = Array("t".utf8)
        let layout = try #require(RecordHeader.layout(keyLength: 1, attributesLength: block.count, payloadLength: 24))
        #expect(layout.payloadOffset == 192 && layout.length == 256)
        key.withUnsafeBytes { key in
            block.withUnsafeBytes { block in
                RecordHeader.write(
                    to: mapping, at: 4096, length: layout.length, sequence: 7, timestamp: 1_767_225_600_000_000_000, expiry: 0,
                    payloadLength: 24, payloadOffset: layout.payloadOffset, key: key, attributes: block)
            }
        }
        let written = mapping.bytes(4096, documented.count)
        #expect(written == documented, "the writer writes \(written.map { String(format: "%02x", $0) }.joined())")

        // The prose's checksums are the ones in the bytes.
        let prose = try FormatDocumentTests.section("### A real record with attributes", in: try FormatDocumentTests.document()).joined(separator: " ")
        let sums = try #require(prose.firstMatch(of: /record checksum `(0x[0-9a-f]+)`.*its checksum `(0x[0-9a-f]+)`/))
        #expect(documented.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 56, as: UInt64.self) } == (try FormatDocumentTests.hexNumber(String(sums.1))))
        #expect(documented.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 72, as: UInt64.self) } == (try FormatDocumentTests.hexNumber(String(sums.2))))
        #expect(FormatDocumentTests.documentedMix64(Array(documented[80...]), seed: A.checksumSeed)
            == documented.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 72, as: UInt64.self) })

        // A real writer's record is the same but for its own timestamp (and so checksum).
        let writer = try ChannelWriter(channel: "test/attributes/vector", capacity: 8192, firstSequence: 7)
        _ = try [UInt8](repeating: 0, count: 24).withUnsafeBytes { try writer.append($0, key: "t", attributes: Self.documented) }
        let reader = try openReader(writer.current)
        let real = reader.mapping.bytes(4096, documented.count)
        for range in [0..<24, 32..<56, 64..<168] { #expect(real[range] == documented[range], "bytes \(range)") }
        let chunk = try #require(try reader.allChunks().first)
        #expect(chunk.attributes == Self.documented && chunk.count == 24 && chunk.payloadOffset == 4096 + 192)
        #expect(chunk.attributes.array == A.ArrayLayout(elementType: .float32, shape: [2, 3]))
        #expect(chunk.attributes.array?.effectiveStrides == [12, 4] && chunk.attributes.array?.extent == 24)
    }

    @Test func everyTypeRoundTripsInOrderAndUnknownTypesAreSkipped() throws {
        var attributes = A(["org.example.z": .double(.nan), "a": .integer(-5), "m": .string("héllo"), "b": .integers([])])
        attributes["a"] = .integer(Int64.min)  // replaced in place, order kept
        attributes["org.example.inf"] = .double(-.infinity)
        let block = try attributes.encodedBlock(payloadLength: 0)
        let decoded = try block.withUnsafeBytes { try A.decode(block: $0, payloadLength: 0).get() }
        #expect(decoded.names == ["org.example.z", "a", "m", "b", "org.example.inf"])
        guard case .double(let nan)? = decoded["org.example.z"] else { Issue.record("no double"); return }
        #expect(nan.isNaN && decoded["a"] == .integer(.min) && decoded["m"] == .string("héllo") && decoded["b"] == .integers([]))

        // A newer writer's entry of type 9, between two known ones: passed by.
        var crafted = Self.entry("x", type: 2, Self.le(1)) + Self.entry("future", type: 9, [1, 2, 3]) + Self.entry("y", type: 1, Array("k".utf8))
        crafted = Self.block(crafted)
        let read = try crafted.withUnsafeBytes { try A.decode(block: $0, payloadLength: 0).get() }
        #expect(read.names == ["x", "y"] && read["x"] == .integer(1))
    }

    @Test func theWriterRefusesWhatAReaderWouldRefuse() {
        let bad: [(A, UInt64, String)] = [
            (A(["Bad": .string("x")]), 0, "valid name"),
            (A(["9x": .string("x")]), 0, "valid name"),
            (A([String(repeating: "a", count: 64): .string("x")]), 0, "valid name"),
            (A(["content-type": .string("tëxt/plain")]), 0, "printable ASCII"),
            (A(["content-type": .integer(1)]), 0, "must be a string"),
            (A(["note": .string(String(repeating: "x", count: 4097))]), 0, "longer than 4096"),
            (A(["note": .string("a\u{0}b")]), 0, "NUL"),
            (A(["list": .integers(Array(repeating: 1, count: 65))]), 0, "limit is 64"),
            (A(["dtype": .string("uint8")]), 16, "needs both dtype and shape"),
            (A(["dtype": .string("uint8"), "shape": .integers([4, -1])]), 16, "negative dimension"),
            (A(["dtype": .string("uint8"), "shape": .integers(Array(repeating: 1, count: 33))]), 16, "limit is 32"),
            (A(["dtype": .string("uint8"), "shape": .integers([4, 4]), "strides": .integers([4])]), 16, "strides has 1 elements"),
            (A(["dtype": .string("float64"), "shape": .integers([2, 2])]), 16, "spans 32 bytes"),
            (A(["dtype": .string("uint8"), "shape": .integers([2, 2]), "strides": .integers([Int64.max, 1])]), 16, "overflows"),
            (A(["strides": .integers([1])]), 16, "strides without"),
            (A(["width": .integer(2), "height": .integer(2)]), 16, "needs width, height and pixel-format"),
            (A(["width": .integer(0), "height": .integer(2), "pixel-format": .string("AB24")]), 16, "not at least 1"),
            (A(["width": .integer(2), "height": .integer(2), "pixel-format": .string("AB24"), "stride": .integer(7)]), 64, "less than width"),
            (A(["width": .integer(4), "height": .integer(2), "pixel-format": .string("AB24")]), 31, "spans 32 bytes"),
            (A(["width": .integer(1), "height": .integer(1), "pixel-format": .string("ABGR8888")]), 16, "not 4 ASCII"),
            (A(["width": .string("1"), "height": .integer(1), "pixel-format": .string("AB24")]), 16, "must be an integer"),
            (Self.manyLongStrings(16), 0, "the limit is 65528"),
        ]
        for (attributes, payload, why) in bad {
            let error = #expect(throws: SegmentError.self, "\(why)") { try attributes.encodedBlock(payloadLength: payload) }
            #expect(error?.kind == .invalidArgument && "\(error.map(String.init(describing:)) ?? "")".contains(why), "\(String(describing: error)) for \(why)")
        }
        // What the checks allow: unknown dtypes and formats (unchecked), empty arrays.
        let fine: [(A, UInt64)] = [
            (A(["dtype": .string("float8_e4m3"), "shape": .integers([1000])]), 0),
            (A(["width": .integer(640), "height": .integer(480), "pixel-format": .string("NV12")]), 0),
            (A(["dtype": .string("float32"), "shape": .integers([0, 1_000_000])]), 0),
            (A(["dtype": .string("uint8"), "shape": .integers([])]), 1),
            (A(["width": .integer(2), "height": .integer(2), "pixel-format": .string("R8  "), "stride": .integer(64)]), 66),
        ]
        for (attributes, payload) in fine { #expect(throws: Never.self) { try attributes.encodedBlock(payloadLength: payload) } }
    }

    typealias Value = ChunkAttributes.Value

    /// Hostile blocks in real segments: the reader refuses each with a bad record
    /// naming the rule, never reads outside the record, never traps.
    @Test func theReaderRefusesEveryBrokenRule() throws {
        let good = Self.entry("x", type: 2, Self.le(1))
        let cases: [([UInt8], UInt64, String)] = [
            ({ var b = Self.block(good); b[0] ^= 1; return b }(), 0, "checksum mismatch"),
            (Self.block(good) + [0, 0, 0, 0], 0, "multiple of 8"),
            (Self.block([8, 2, 8, 0, 120, 0, 0, 0]), 0, "runs past the block"),
            (Self.block(good + good), 0, "appears twice"),
            (Self.block(Self.entry("X", type: 2, Self.le(1))), 0, "invalid name"),
            (Self.block(Self.entry("s", type: 1, [0xC3])), 0, "UTF-8"),
            (Self.block(Self.entry("n", type: 2, [1, 2, 3])), 0, "not 8"),
            (Self.block(Self.entry("shape", type: 1, Array("2".utf8))), 0, "must be an array"),
            (Self.block(Self.entry("dtype", type: 1, Array("uint16".utf8)) + Self.entry("shape", type: 3, Self.le(9))), 16, "spans 18 bytes"),
        ]
        for (block, payload, why) in cases {
            let writer = try ChannelWriter(channel: "test/attributes/hostile", capacity: 8192)
            let key = Array("k".utf8)
            let layout = try #require(RecordHeader.layout(keyLength: 1, attributesLength: (block.count + 7) & ~7, payloadLength: payload))
            let reader = try openReader(writer.current)
            // Written as a hostile writer would, through the writer's own mapping.
            key.withUnsafeBytes { key in
                block.withUnsafeBytes { block in
                    RecordHeader.write(
                        to: writer.current.mapping, at: 4096, length: layout.length, sequence: 1, timestamp: 1, expiry: 0,
                        payloadLength: payload, payloadOffset: layout.payloadOffset, key: key, attributes: block)
                }
            }
            writer.current.commit(end: 4096 + layout.length, sequence: 1, bytes: layout.length)
            let error = #expect(throws: SegmentError.self, "\(why)") { try reader.allChunks() }
            #expect(error?.kind == .badRecord && "\(error.map(String.init(describing:)) ?? "")".contains(why), "\(String(describing: error)) for \(why)")
        }
    }

    @Test func garbageCollectionKeepsTheAttributes() throws {
        let writer = try ChannelWriter(channel: "test/attributes/gc", capacity: 64 * 1024, policy: .whenFull)
        let image = A(["width": .integer(4), "height": .integer(2), "pixel-format": .string("XR24"), "org.example.n": .integer(0)])
        for i in 0..<5 {
            var attributes = image
            attributes["org.example.n"] = .integer(Int64(i))
            _ = try [UInt8](repeating: UInt8(i), count: 32).withUnsafeBytes { try writer.append($0, key: "frame\(i % 2)", attributes: attributes) }
        }
        let rotation = try writer.collectGarbage()
        let chunks = try openReader(rotation.new).allChunks()
        #expect(chunks.map(\.sequence) == [4, 5])
        #expect(chunks.map { $0.attributes["org.example.n"] } == [.integer(3), .integer(4)])
        #expect(chunks.allSatisfy { $0.attributes.image == A.ImageLayout(width: 4, height: 2, pixelFormat: .xrgb8888) })
    }

    // MARK: Crafting blocks

    static func manyLongStrings(_ count: Int) -> A {
        var attributes = A()
        for i in 0..<count { attributes["n\(i)"] = .string(String(repeating: "v", count: 4096)) }
        return attributes
    }

    static func le(_ values: Int64...) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } } }

    static func entry(_ name: String, type: UInt8, _ value: [UInt8]) -> [UInt8] {
        var e = [UInt8(name.utf8.count), type, UInt8(value.count & 0xFF), UInt8(value.count >> 8)] + Array(name.utf8) + value
        e += repeatElement(0, count: (8 - e.count % 8) % 8)
        return e
    }

    /// Entries behind a correct checksum.
    static func block(_ entries: [UInt8]) -> [UInt8] {
        let sum = entries.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, A.checksumSeed) }
        return withUnsafeBytes(of: sum.littleEndian) { Array($0) } + entries
    }
}
