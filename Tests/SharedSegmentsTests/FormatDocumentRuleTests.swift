import CShmBusLinux
import Foundation
@testable import SharedSegments
import ShmBusSystem
import TestSupport
import Testing

/// docs/FORMAT.md's numbers and examples (checksum vectors, the example record, seal
/// values, channel names, versions, reserved bytes) against the code, so that the
/// document cannot drift: every value is parsed out of the document, none is copied
/// into this file.
extension FormatDocumentTests {
    static func document() throws -> String {
        try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("docs/FORMAT.md"), encoding: .utf8)
    }

    /// The lines of the section that starts with `heading` (up to the next heading).
    static func section(_ heading: String, in text: String) throws -> [Substring] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0 == heading }, "FORMAT.md has no '\(heading)'")
        let rest = lines[(start + 1)...]
        let end = rest.firstIndex { $0.hasPrefix("#") } ?? lines.endIndex
        return Array(lines[(start + 1)..<end])
    }

    /// The cells of the table rows of `lines` (header and separator rows dropped).
    static func tableRows(_ lines: [Substring]) -> [[String]] {
        lines.filter { $0.hasPrefix("|") }.dropFirst(2).map { line in
            Array(line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast())
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    static func hexNumber(_ text: String) throws -> UInt64 {
        let digits = text.trimmingCharacters(in: CharacterSet(charactersIn: "` ")).lowercased()
        #expect(digits.hasPrefix("0x"), "\(text) is not written 0x…")
        return try #require(UInt64(digits.dropFirst(2), radix: 16), "\(text) is not a hex number")
    }

    static func hexBytes(_ text: some StringProtocol) throws -> [UInt8] {
        let digits = Array(text.filter(\.isHexDigit))
        try #require(digits.count % 2 == 0, "odd number of hex digits in \(text)")
        return try stride(from: 0, to: digits.count, by: 2).map { try #require(UInt8(String(digits[$0...$0 + 1]), radix: 16)) }
    }

    /// The document's pseudo-code, transcribed (not the C function): used to check that
    /// what the document says is what the writer does.
    static func documentedMix64(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var h = seed
        var i = 0
        while i < bytes.count {
            var w: UInt64 = 0
            for (k, byte) in bytes[i..<min(i + 8, bytes.count)].enumerated() { w |= UInt64(byte) << (8 * UInt64(k)) }
            h ^= w
            h = h &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            i += 8
        }
        return h
    }

    // MARK: Checksums

    @Test func checksumVectorsAreWhatTheCFunctionComputes() throws {
        let rows = Self.tableRows(try Self.section("### Test vectors", in: try Self.document()))
        #expect(rows.count >= 8)
        var lengths = Set<Int>()
        var seeds = Set<UInt64>()
        for row in rows {
            try #require(row.count == 4, "row \(row)")
            let length = try #require(Int(row[0]), "length \(row[0])")
            let input = row[1] == "(empty)" ? [] : try Self.hexBytes(row[1])
            #expect(input.count == length, "row \(length): the input has \(input.count) bytes")
            #expect(input == (0..<length).map { UInt8($0 + 1) }, "row \(length): the input is not the documented 01 02 03 …")
            let seed = try Self.hexNumber(row[2])
            let documented = try Self.hexNumber(row[3])
            let computed = input.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, seed) }
            #expect(computed == documented, "mix64 of \(length) bytes, seed \(row[2]): the code gives 0x\(String(computed, radix: 16)), FORMAT.md says \(row[3])")
            #expect(Self.documentedMix64(input, seed: seed) == documented, "the pseudo-code disagrees with its own vector (\(length) bytes)")
            lengths.insert(length)
            seeds.insert(seed)
        }
        #expect(lengths.isSuperset(of: [0, 1, 7, 8, 9, 64]))
        #expect(seeds == [SegmentLayout.recordChecksumSeed, SegmentLayout.headerChecksumSeed])
    }

    @Test func theDocumentedSeedsAreTheCodes() throws {
        let text = try Self.document()
        #expect(text.contains("0x\(String(SegmentLayout.headerChecksumSeed, radix: 16, uppercase: true)))`"), "header seed")
        #expect(text.contains("`mix64(key, mix64(H, 0x\(String(SegmentLayout.recordChecksumSeed, radix: 16, uppercase: true))))`"), "record seed")
    }

    /// The values FORMAT.md says a reader with the xor-shift outside the loop gets are
    /// really what that mistake gives, and differ from the right ones.
    @Test func theDocumentedWrongChecksumsAreTheMistakeItDescribes() throws {
        let text = try Self.document()
        let pattern = /gets\s+`(0x[0-9a-f]+)`\s+for the 9-byte record-seed row and\s+`(0x[0-9a-f]+)`\s+for the\s+64-byte one/
        let match = try #require(text.firstMatch(of: pattern), "FORMAT.md no longer names the mistaken values")
        func outsideTheLoop(_ bytes: [UInt8]) -> UInt64 {
            var h = SegmentLayout.recordChecksumSeed
            for i in stride(from: 0, to: bytes.count, by: 8) {
                var w: UInt64 = 0
                for (k, byte) in bytes[i..<min(i + 8, bytes.count)].enumerated() { w |= UInt64(byte) << (8 * UInt64(k)) }
                h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
            }
            return h ^ (h >> 29)
        }
        let nine = (1...9).map(UInt8.init), sixtyFour = (1...64).map(UInt8.init)
        #expect(try Self.hexNumber(String(match.1)) == outsideTheLoop(nine))
        #expect(try Self.hexNumber(String(match.2)) == outsideTheLoop(sixtyFour))
        #expect(outsideTheLoop(nine) != Self.documentedMix64(nine, seed: SegmentLayout.recordChecksumSeed))
    }

    /// The example record: the writer's record code produces exactly its bytes, and the
    /// reader's record code accepts them (and refuses them with one bit of the checksum
    /// flipped).
    @Test func theExampleRecordIsWhatTheWriterWritesAndTheReaderAccepts() throws {
        let lines = try Self.section("### A real record", in: try Self.document())
        let marker = try #require(lines.firstIndex { $0.hasPrefix("<!-- record-vector") })
        let open = try #require(lines[marker...].firstIndex { $0.hasPrefix("```") })
        let close = try #require(lines[(open + 1)...].firstIndex { $0.hasPrefix("```") })
        let documented = try Self.hexBytes(lines[(open + 1)..<close].joined())
        #expect(documented.count == 64)
        let prose = lines.joined(separator: " ")
        let steps = try #require(prose.firstMatch(of: /is `(0x[0-9a-f]+)`; continuing over the key gives `(0x[0-9a-f]+)`/))

        let scratch = try Memfd.create(name: "format-record", size: 8192)
        defer { try? scratch.close() }
        let mapping = try MemoryMapping(fd: scratch, length: 8192, writable: true)
        let key = Array("latest".utf8), payload = Array("hello, shared memory".utf8)
        let layout = try #require(RecordHeader.layout(keyLength: key.count, payloadLength: UInt64(payload.count)))
        key.withUnsafeBytes {
            RecordHeader.write(
                to: mapping, at: 4096, length: layout.length, sequence: 1, timestamp: 1_767_225_600_000_000_000, expiry: 0,
                payloadLength: UInt64(payload.count), payloadOffset: layout.payloadOffset, key: $0)
        }
        mapping.store(bytes: payload, at: 4096 + Int(layout.payloadOffset))
        let written = mapping.bytes(4096, 64)
        #expect(written == documented, "the writer writes \(written.map { String(format: "%02x", $0) }.joined())")

        let first56 = Array(written[0..<56])
        let intermediate = first56.withUnsafeBytes { shmbus_mix64($0.baseAddress, 56, SegmentLayout.recordChecksumSeed) }
        #expect(intermediate == (try Self.hexNumber(String(steps.1))))
        let sum = key.withUnsafeBytes { RecordHeader.checksum(header: UnsafeRawPointer(mapping.base.advanced(by: 4096)), key: $0) }
        #expect(sum == (try Self.hexNumber(String(steps.2))))
        #expect(Self.documentedMix64(key, seed: Self.documentedMix64(first56, seed: SegmentLayout.recordChecksumSeed)) == sum)

        // The document's bytes, as a reader meets them.
        mapping.store(bytes: documented, at: 4096)
        let record = try RecordHeader.read(from: mapping, at: 4096, limit: 4096 + layout.length)
        let readKey = record.key
        #expect(readKey == key && record.sequence == 1 && record.payloadLength == 20 && record.length == 192)
        var flipped = documented
        flipped[63] ^= 0x01
        mapping.store(bytes: flipped, at: 4096)
        #expect(throws: SegmentError.self) { try RecordHeader.read(from: mapping, at: 4096, limit: 4096 + layout.length) }
    }

    /// Records and headers a real writer made carry the checksums the document's
    /// pseudo-code computes (keys of 0 to 255 bytes, payloads of several sizes).
    @Test func realSegmentsCarryTheDocumentedChecksums() throws {
        let writer = try ChannelWriter(channel: "test/format/checksums", capacity: 64 * 1024, policy: .whenFull)
        let keys = ["", "k", "seven77", "eight888", "nine99999", String(repeating: "x", count: 64), String(repeating: "é", count: 127) + "z"]
        for (i, key) in keys.enumerated() {
            _ = try [UInt8](repeating: UInt8(i), count: i * 37).withUnsafeBytes { try writer.append($0, key: key) }
        }
        let reader = try openReader(writer.current)
        let base = UnsafeRawPointer(reader.mapping.base)
        let header = Array(UnsafeRawBufferPointer(start: base, count: 280))
        #expect(Self.documentedMix64(Array(header[0..<272]), seed: SegmentLayout.headerChecksumSeed)
            == header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 272, as: UInt64.self) })
        let chunks = try reader.allChunks()
        #expect(chunks.map(\.key) == keys)
        for chunk in chunks {
            var record = Array(UnsafeRawBufferPointer(start: base.advanced(by: Int(chunk.recordOffset)), count: 64))
            let stored = record.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 56, as: UInt64.self) }
            record.replaceSubrange(4..<8, with: [0, 0, 0, 0])
            let key = Array(chunk.key.utf8)
            #expect(Self.documentedMix64(key, seed: Self.documentedMix64(Array(record[0..<56]), seed: SegmentLayout.recordChecksumSeed)) == stored,
                "record \(chunk.sequence), key of \(key.count) bytes")
        }
    }

    // MARK: Seals

    @Test func sealValuesAreTheKernelsAndTheRequiredOnesTheCodes() throws {
        let text = try Self.document()
        let rows = Self.tableRows(try Self.section("### Seals", in: text))
        let constants: [String: Int32] = [
            "F_SEAL_SEAL": shmbus_F_SEAL_SEAL, "F_SEAL_SHRINK": shmbus_F_SEAL_SHRINK, "F_SEAL_GROW": shmbus_F_SEAL_GROW,
            "F_SEAL_WRITE": shmbus_F_SEAL_WRITE, "F_SEAL_FUTURE_WRITE": shmbus_F_SEAL_FUTURE_WRITE,
        ]
        var segment: Int32 = 0, doorbell: Int32 = 0
        for row in rows {
            try #require(row.count == 4, "row \(row)")
            let value = Int32(try Self.hexNumber(row[1]))
            #expect(constants[row[0]] == value, "\(row[0]): FORMAT.md says \(row[1]), the code uses \(constants[row[0]].map { String($0) } ?? "nothing")")
            if row[2] == "required" { segment |= value } else { #expect(row[2] == "not used") }
            if row[3] == "required" { doorbell |= value } else { #expect(row[3] == "not used") }
        }
        #expect(Set(rows.map { $0[0] }) == Set(constants.keys))
        #expect(segment == Memfd.segmentSeals, "segment seals: FORMAT.md requires \(segment), the code \(Memfd.segmentSeals)")
        #expect(doorbell == Memfd.doorbellSeals, "doorbell seals: FORMAT.md requires \(doorbell), the code \(Memfd.doorbellSeals)")
        let mask = try #require(text.firstMatch(of: /requires `\(seals & (0x[0-9a-f]+)\) == (0x[0-9a-f]+)`/))
        #expect(Int32(try Self.hexNumber(String(mask.1))) == Memfd.segmentSeals)
        #expect(Int32(try Self.hexNumber(String(mask.2))) == Memfd.segmentSeals)
        let doorbellMask = try #require(text.firstMatch(of: /A doorbell\s+requires `(0x[0-9a-f]+)`/))
        #expect(Int32(try Self.hexNumber(String(doorbellMask.1))) == Memfd.doorbellSeals)
        // "Other bits may be set too": the reader's check accepts a superset.
        #expect(Memfd.missingSeals(Memfd.segmentSeals | shmbus_F_SEAL_WRITE | 0x20, required: Memfd.segmentSeals).isEmpty)
        #expect(Memfd.missingSeals(Memfd.segmentSeals & ~shmbus_F_SEAL_FUTURE_WRITE, required: Memfd.segmentSeals) == ["F_SEAL_FUTURE_WRITE"])
    }

    // MARK: Channel names

    static func channelNameExamples() throws -> [(name: String, valid: Bool)] {
        let rows = Self.tableRows(try Self.section("## Channel names", in: try Self.document()))
        return try rows.map { row in
            try #require(row.count == 3, "row \(row)")
            var cell = row[0]
            try #require(cell.hasPrefix("`") && cell.hasSuffix("`") && cell.count >= 2, "name \(cell) is not in backticks")
            cell = String(cell.dropFirst().dropLast())
            var name = cell == "(empty)" ? "" : cell
            if let match = name.wholeMatch(of: /(.)\{([0-9]+)\}/) {
                name = String(repeating: String(match.1), count: Int(match.2)!)
            }
            try #require(row[1] == "yes" || row[1] == "no", "validity \(row[1])")
            return (name, row[1] == "yes")
        }
    }

    @Test func channelNameExamplesAreWhatTheCodeDecides() throws {
        let examples = try Self.channelNameExamples()
        #expect(examples.filter(\.valid).count >= 10)
        #expect(examples.filter { !$0.valid }.count >= 10)
        for (name, valid) in examples {
            let problem = ChannelName.problem(with: name)
            #expect((problem == nil) == valid, "'\(name.prefix(40))' (\(name.utf8.count) bytes): FORMAT.md says \(valid ? "valid" : "invalid"), the code says \(problem ?? "valid")")
        }
        #expect(examples.contains { $0.name.utf8.count == 200 && $0.valid })
        #expect(examples.contains { $0.name.utf8.count == 201 && !$0.valid })
        #expect(examples.contains { $0.name.isEmpty && !$0.valid })
    }

    /// The grammar itself, transcribed from the ABNF, agrees with the code on every
    /// example and on every short name over a small alphabet.
    @Test func theChannelNameGrammarIsTheCodes() throws {
        func grammar(_ name: String) -> Bool {
            let bytes = Array(name.utf8)
            guard (1...200).contains(bytes.count) else { return false }
            let nameChar: (UInt8) -> Bool = { b in
                (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2E || b == 0x2D
            }
            return bytes.split(separator: 0x2F, omittingEmptySubsequences: false).allSatisfy { component in
                !component.isEmpty && component.allSatisfy(nameChar) && Array(component) != [0x2E, 0x2E]
            }
        }
        for (name, valid) in try Self.channelNameExamples() { #expect(grammar(name) == valid, "\(name)") }
        let alphabet = ["a", ".", "/", "-", " "]
        var names = [""]
        for _ in 0..<5 { names = names.flatMap { prefix in alphabet.map { prefix + $0 } } + [""] }
        for name in Set(names) { #expect(grammar(name) == (ChannelName.problem(with: name) == nil), "'\(name)'") }
    }

    // MARK: Versions, reserved bytes, unknown bits

    /// A copy of a real segment in a writable memfd of its own, for editing.
    static func editableCopy(of reader: SegmentReader) throws -> (UnixFileDescriptor, MemoryMapping) {
        let size = Int(reader.header.capacity)
        let fd = try Memfd.create(name: "format-copy", size: size)
        let mapping = try MemoryMapping(fd: fd, length: size, writable: true)
        mapping.base.copyMemory(from: reader.mapping.base, byteCount: size)
        return (fd, mapping)
    }

    static func resumHeader(_ mapping: MemoryMapping) {
        let L = SegmentLayout.self
        mapping.store(shmbus_mix64(mapping.base, L.headerChecksumOffset, L.headerChecksumSeed), at: L.headerChecksumOffset)
    }

    @Test func aReaderRefusesAnyOtherVersionWithTheDocumentedError() throws {
        let text = try Self.document()
        #expect(text.contains("| version | versionOffset | 8 | 4 | u32 | no | format version, `\(SegmentLayout.version)`"))
        let quoted = try #require(text.firstMatch(of: /\(`format version N is not supported\s+\(this reader knows ([0-9]+) and ([0-9]+)\)`\)/))
        #expect(UInt32(quoted.1) == SegmentLayout.version)
        #expect(UInt32(quoted.2) == SegmentLayout.reusableVersion)
        let writer = try ChannelWriter(channel: "test/format/version", capacity: 16 * 1024)
        _ = try [UInt8(1)].withUnsafeBytes { try writer.append($0, key: "k") }
        let (fd, mapping) = try Self.editableCopy(of: try openReader(writer.current))
        defer { try? fd.close() }
        #expect(try SegmentReader(fd: fd, options: .init(requireSeals: false)).header.generation == 1)
        for version: UInt32 in [0, 3, 0xFFFF_FFFF] {
            mapping.store(version, at: SegmentLayout.versionOffset)
            Self.resumHeader(mapping)
            let error = try #require(throws: SegmentError.self) { try SegmentReader(fd: fd, options: .init(requireSeals: false)) }
            let known = "this reader knows \(SegmentLayout.version) and \(SegmentLayout.reusableVersion)"
            #expect(error.message.contains("format version \(version) is not supported (\(known))"), "\(error)")
        }
        // Version 2 is known, and needs a lease.
        mapping.store(SegmentLayout.reusableVersion, at: SegmentLayout.versionOffset)
        Self.resumHeader(mapping)
        let error = try #require(throws: SegmentError.self) { try SegmentReader(fd: fd, options: .init(requireSeals: false)) }
        #expect(error.kind == .leaseRequired)
        #expect(try SegmentReader(fd: fd, options: .init(requireSeals: false), lease: ReadLease()).header.isReusable)
    }

    /// "Readers ignore" reserved bytes and unknown bits: a segment with all of them set
    /// (checksums recomputed) reads exactly as before.
    @Test func reservedBytesAndUnknownBitsAreIgnored() throws {
        let L = SegmentLayout.self
        let writer = try ChannelWriter(channel: "test/format/reserved", capacity: 16 * 1024)
        for i in 0..<3 { _ = try [UInt8(i)].withUnsafeBytes { try writer.append($0, key: "key\(i)") } }
        let original = try openReader(writer.current)
        let before = try original.allChunks()
        let (fd, mapping) = try Self.editableCopy(of: original)
        defer { try? fd.close() }
        // Header: the two unlisted bytes after channel_length, the channel's padding,
        // the gap before the commit word, and the mutable area's unlisted bytes.
        mapping.store(UInt16(0xBEEF), at: 70)
        mapping.store(UInt64.max, at: L.channelOffset + 192)
        mapping.store(UInt64.max, at: 280)
        mapping.store(UInt64.max, at: 408)
        mapping.store(UInt64.max, at: 2000)
        mapping.store(UInt32(0xFFFF_FFFE), at: L.stateOffset)   // every state bit but "retired"
        Self.resumHeader(mapping)
        for chunk in before {
            let at = Int(chunk.recordOffset)
            mapping.store(UInt64.max, at: at + 96)   // the padding between key and payload
            mapping.store(UInt32(0xFFFF_FFFE), at: at + L.recordFlagsOffset)   // every flag but "obsolete"
            let sum = Array(chunk.key.utf8).withUnsafeBytes { RecordHeader.checksum(header: UnsafeRawPointer(mapping.base.advanced(by: at)), key: $0) }
            mapping.store(sum, at: at + L.recordChecksumOffset)
        }
        let edited = try SegmentReader(fd: fd, options: .init(requireSeals: false))
        let after = try edited.allChunks()
        #expect(after.map(\.sequence) == before.map(\.sequence))
        #expect(after.map(\.key) == before.map(\.key))
        #expect(after.map(\.bytes) == before.map(\.bytes))
        #expect(after.allSatisfy { !$0.isObsolete })
        #expect(try edited.liveState().isRetired == false)
        #expect(try edited.latest(key: "key2")?.bytes == [2])
        // ...and attributes_length, reserved before attributes came, is covered by the
        // record checksum, as documented.
        mapping.store(UInt16(0x0001), at: Int(before[0].recordOffset) + 54)
        #expect(throws: SegmentError.self) { try edited.chunk(at: before[0].recordOffset, limit: try edited.liveState().committedEnd) }
    }
}

/// docs/PROTOCOL.md's statements that the segment code and the interface XML decide.
@Suite struct ProtocolDocumentTests {
    static func text(_ path: String) throws -> String {
        try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent(path), encoding: .utf8)
    }

    /// The SegmentRemoved table lists exactly the reasons the XML declares.
    @Test func segmentRemovedReasonsAreTheXMLs() throws {
        let xml = try Self.text("dbus/org.shmbus.Registry1.xml")
        let annotation = try #require(xml.firstMatch(of: /value="reason: ([a-z, -]+)\."/), "the XML's SegmentRemoved reasons")
        let declared = Set(annotation.1.replacing(", or ", with: ", ").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(declared.count == 5)
        let rows = FormatDocumentTests.tableRows(try FormatDocumentTests.section("### SegmentRemoved", in: try Self.text("docs/PROTOCOL.md")))
        let documented = Set(rows.map { $0[0].trimmingCharacters(in: CharacterSet(charactersIn: "`")) })
        #expect(documented == declared, "PROTOCOL.md lists \(documented.sorted()), the XML \(declared.sorted())")
    }

    /// "Committed bytes": `committed_end - 4096`, so one 20-byte chunk keyed `latest`
    /// is 192, as PROTOCOL.md says and its busctl example shows.
    @Test func committedBytesExcludeTheHeader() throws {
        let doc = try Self.text("docs/PROTOCOL.md")
        #expect(doc.contains("`committed_end - 4096`"))
        #expect(doc.contains("one chunk of 20 bytes with the key\n  `latest` takes one record of 192 bytes"))
        let writer = try ChannelWriter(channel: "test/protocol/committed", capacity: 16 * 1024)
        let reader = try openReader(writer.current)
        #expect(try reader.liveState().committedBytes == 0)
        _ = try Array("hello, shared memory".utf8).withUnsafeBytes { try writer.append($0, key: "latest") }
        let state = try reader.liveState()
        #expect(state.committedBytes == 192)
        #expect(state.committedBytes == state.committedEnd - UInt64(SegmentLayout.headerSize))
    }
}
