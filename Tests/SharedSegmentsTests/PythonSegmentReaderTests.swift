import CShmBusLinux
import Foundation
import Glibc
@testable import SharedSegments
import ShmBusSystem
import TestSupport
import Testing

/// examples/python/shmbus_segment.py, a reader written from docs/FORMAT.md alone, run
/// by Debian's /usr/bin/python3 as a real child process on segments Swift wrote: it
/// reads every generation of a lineage exactly as written, and refuses corrupted
/// copies with its own typed errors, never a traceback.
@Suite struct PythonSegmentReaderTests {
    static let python = "/usr/bin/python3"
    static var script: String { BuiltProducts.repositoryRoot.appendingPathComponent("examples/python/shmbus_segment.py").path }

    struct Run {
        var status: ChildProcess.Termination
        var stdout: String
        var stderr: String
        var objects: [[String: Any]] {
            stdout.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])) as? [String: Any]
            }
        }
    }

    static func run(_ arguments: [String], inheriting: [UnixFileDescriptor] = []) async throws -> Run {
        let child = try ChildProcess(python, [script] + arguments, stdout: .pipe, stderr: .pipe, inheriting: inheriting)
        let (o, e) = try await child.collectOutput()
        let status = await child.exit()
        return Run(status: status, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// What the test wrote, by sequence: the ground truth, independent of any reader.
    struct Lineage {
        let writer: ChannelWriter
        var segments: [SegmentWriter]
        var written: [UInt64: (key: String, payload: [UInt8], expiry: UInt64)] = [:]
        /// The sequences appended while each segment was current.
        var appended: [[UInt64]]
    }

    /// Four generations of one channel: keyed chunks republished (obsolete ones),
    /// chunks without a key, an expired one, an empty payload and payloads around the
    /// 64-byte boundaries; a collection (copies) between generations, each old segment
    /// retired naming its successor.
    static func writeLineage(generations: Int = 4) throws -> Lineage {
        let writer = try ChannelWriter(channel: "test/python/lineage", capacity: 64 * 1024, policy: .whenFull)
        var lineage = Lineage(writer: writer, segments: [writer.current], appended: [[]])
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func nextByte() -> UInt8 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        let sizes = [0, 1, 63, 64, 65, 200, 1000, 3000]
        var n = 0
        for generation in 1...generations {
            for _ in 0..<18 {
                n += 1
                let key = switch n % 4 { case 0: "latest"; case 1: "frame/\(n % 3)"; case 2: ""; default: "k\(n % 7)" }
                let payload = (0..<sizes[n % sizes.count]).map { _ in nextByte() }
                let expiry: UInt64 = n % 11 == 0 ? RealtimeClock.now() - 1 : (n % 13 == 0 ? RealtimeClock.now() + 3_600_000_000_000 : 0)
                let appended = try payload.withUnsafeBytes { try writer.append($0, key: key, expiresAt: expiry) }
                try #require(appended.rotation == nil, "the test's segments are large enough to need no collection on their own")
                lineage.written[appended.sequence] = (key, payload, expiry)
                lineage.appended[generation - 1].append(appended.sequence)
            }
            if generation < generations {
                let rotation = try writer.collectGarbage()
                writer.retire(rotation)
                lineage.segments.append(rotation.new)
                lineage.appended.append([])
            }
        }
        return lineage
    }

    @Test func pythonReadsEveryGenerationOfALineageExactlyAsSwiftWroteIt() async throws {
        let lineage = try Self.writeLineage()
        let segments = lineage.segments
        #expect(segments.map(\.header.generation) == [1, 2, 3, 4])
        // The first two as inherited read-only descriptors, the others as /proc paths
        // of this process's own descriptors.
        let readOnly = try segments.prefix(2).map { try Memfd.reopenReadOnly($0.fileDescriptor) }
        defer { for fd in readOnly { try? fd.close() } }
        let arguments = readOnly.map { "\($0.rawValue)" } + segments.dropFirst(2).map { "/proc/\(getpid())/fd/\($0.fileDescriptor.rawValue)" }
        let run = try await Self.run(["--payloads"] + arguments, inheriting: readOnly)
        try #require(run.status == .exited(0), "python: \(run.stderr)")
        let listed = run.objects
        try #require(listed.count == segments.count)

        var sequencesSeen = Set<UInt64>()
        for (i, (segment, object)) in zip(segments, listed).enumerated() {
            let reader = try openReader(segment)
            let state = try reader.liveState()
            #expect(object["segment"] as? String == segment.name)
            #expect(object["channel"] as? String == "test/python/lineage")
            #expect((object["generation"] as? NSNumber)?.uint64Value == segment.header.generation)
            #expect((object["base_sequence"] as? NSNumber)?.uint64Value == segment.header.baseSequence)
            #expect((object["last_sequence"] as? NSNumber)?.uint64Value == state.lastSequence)
            #expect((object["committed_end"] as? NSNumber)?.uint64Value == state.committedEnd)
            #expect(object["retired"] as? Bool == (i < segments.count - 1))
            #expect(object["successor"] as? String == (i < segments.count - 1 ? segments[i + 1].name : nil))

            let records = try #require(object["records"] as? [[String: Any]])
            let swift = try reader.allChunks()
            #expect(records.count == swift.count, "segment \(i + 1): Python lists \(records.count) records, Swift \(swift.count)")
            for (record, chunk) in zip(records, swift) {
                let sequence = try #require((record["sequence"] as? NSNumber)?.uint64Value)
                let truth = try #require(lineage.written[sequence], "Python read sequence \(sequence), which was never written")
                // What Python read is what was written...
                #expect(record["key"] as? String == truth.key, "sequence \(sequence)")
                #expect(record["payload"] as? String == Self.hex(truth.payload), "sequence \(sequence)")
                #expect((record["length"] as? NSNumber)?.intValue == truth.payload.count)
                #expect((record["expiry"] as? NSNumber)?.uint64Value == truth.expiry)
                // ...and agrees with the Swift reader record by record.
                #expect(sequence == chunk.sequence)
                #expect((record["offset"] as? NSNumber)?.uint64Value == chunk.recordOffset)
                #expect(record["obsolete"] as? Bool == chunk.isObsolete, "sequence \(sequence)")
                #expect(record["expired"] as? Bool == (truth.expiry != 0 && truth.expiry <= RealtimeClock.now()))
                sequencesSeen.insert(sequence)
            }
            // Copies (at or below base_sequence) first, then this generation's appends.
            let sequences = records.compactMap { ($0["sequence"] as? NSNumber)?.uint64Value }
            let copies = sequences.filter { $0 <= segment.header.baseSequence }
            #expect(Array(sequences.dropFirst(copies.count)) == lineage.appended[i], "segment \(i + 1)")
            #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $0 < $1 }, "sequences increase within segment \(i + 1)")
            if i > 0 { #expect(!copies.isEmpty, "generation \(i + 1) holds copies") }
        }
        #expect(sequencesSeen == Set(lineage.written.keys), "every chunk written was read in some generation")
        #expect(listed.contains { ($0["records"] as? [[String: Any]])?.contains { $0["obsolete"] as? Bool == true } == true })
        #expect(listed.contains { ($0["records"] as? [[String: Any]])?.contains { $0["expired"] as? Bool == true } == true })

        // The newest chunk of each key over a channel's segments (FORMAT.md, "The newest
        // chunk of a key"): as today after a takeover, a second writer continues the
        // sequences in a generation 1 of its own, and the first one's last segment
        // stays active beside it.
        let successor = try ChannelWriter(
            channel: "test/python/lineage", capacity: 64 * 1024, policy: .whenFull, firstSequence: lineage.writer.lastSequence + 1)
        var written = lineage.written
        for (i, key) in ["latest", "k1", "successor-only", "latest", "frame/0"].enumerated() {
            let payload = [UInt8](repeating: UInt8(i + 1), count: 10 + i)
            let appended = try payload.withUnsafeBytes { try successor.append($0, key: key) }
            written[appended.sequence] = (key, payload, 0)
        }
        let current = successor.current
        let held = [current] + segments   // every segment, the current one first
        let keys = Set(written.values.map(\.key)).subtracting([""])
        let expected = try Self.newestByTheDocument(held.map { try openReader($0) }, current: current.name, keys: keys)
        // A key whose last chunk expired has no newest chunk, although a retired
        // segment still holds an older one unflagged.
        #expect(expected["k6"] == nil && written.filter { $0.value.key == "k6" }.max { $0.key < $1.key }!.value.expiry != 0)
        #expect(expected["latest"]?.segment == current.name)
        #expect(expected["successor-only"]?.segment == current.name)
        #expect(expected["k4"]?.segment == segments.last!.name, "a key only the first writer wrote comes from its segment")
        for (key, found) in expected {
            let last = written.filter { $0.value.key == key }.max { $0.key < $1.key }!
            if last.value.expiry == 0 {
                #expect(found.sequence == last.key, "key \(key): the rule finds the last chunk written")
            }
        }
        let currentReadOnly = try Memfd.reopenReadOnly(current.fileDescriptor)
        defer { try? currentReadOnly.close() }
        for key in keys.sorted() + ["never-written"] {
            let newest = try await Self.run(["--latest", key, "\(currentReadOnly.rawValue)"] + arguments, inheriting: readOnly + [currentReadOnly])
            try #require(newest.status == .exited(0), "python --latest \(key): \(newest.stderr)")
            let found = try JSONSerialization.jsonObject(with: Data(newest.stdout.utf8), options: [.fragmentsAllowed]) as? [String: Any]
            #expect((found?["sequence"] as? NSNumber)?.uint64Value == expected[key]?.sequence, "key \(key)")
            #expect(found?["segment"] as? String == expected[key]?.segment, "key \(key)")
        }
    }

    /// FORMAT.md's rule with the Swift reader: retired segments left out, the current
    /// one first, then by generation; step 1 (`latest(key:)`) in each.
    static func newestByTheDocument(_ readers: [SegmentReader], current: String, keys: Set<String>) throws -> [String: (segment: String, sequence: UInt64)] {
        let active = try readers.filter { try !$0.liveState().isRetired }
        let ordered = active.sorted { ($0.name == current ? 1 : 0, $0.header.generation) > ($1.name == current ? 1 : 0, $1.header.generation) }
        var found: [String: (segment: String, sequence: UInt64)] = [:]
        for key in keys {
            for reader in ordered {
                if let chunk = try reader.latest(key: key) {
                    found[key] = (reader.name, chunk.sequence)
                    break
                }
            }
        }
        return found
    }

    // MARK: Corruption

    /// A sealed copy of `segment` with `edit` applied, as a reader would be handed it.
    static func corruptedCopy(of segment: SegmentWriter, seal: Bool = true, _ edit: (MemoryMapping) -> Void) throws -> UnixFileDescriptor {
        let reader = try openReader(segment)
        let size = Int(segment.capacity)
        let fd = try Memfd.create(name: "python-corrupt", size: size)
        let mapping = try MemoryMapping(fd: fd, length: size, writable: true)
        mapping.base.copyMemory(from: reader.mapping.base, byteCount: size)
        edit(mapping)
        if seal { try Memfd.addSeals(Memfd.segmentSeals, to: fd) }
        return fd
    }

    static func resumHeader(_ m: MemoryMapping) {
        m.store(shmbus_mix64(m.base, SegmentLayout.headerChecksumOffset, SegmentLayout.headerChecksumSeed), at: SegmentLayout.headerChecksumOffset)
    }

    static func resumRecord(_ m: MemoryMapping, at offset: Int) {
        let keyLength = min(Int(m.load(offset + SegmentLayout.recordKeyLengthOffset, as: UInt16.self)), 255)
        let key = m.bytes(offset + SegmentLayout.recordKeyOffset, keyLength)
        let sum = key.withUnsafeBytes { RecordHeader.checksum(header: UnsafeRawPointer(m.base.advanced(by: offset)), key: $0) }
        m.store(sum, at: offset + SegmentLayout.recordChecksumOffset)
    }

    /// Python's verdict on a copy: its error class and message, or nil when it read it.
    static func verdict(_ fd: UnixFileDescriptor, _ extra: [String] = []) async throws -> (error: String, message: String)? {
        let run = try await run(extra + ["\(fd.rawValue)"], inheriting: [fd])
        #expect(!run.stderr.contains("Traceback"), "python crashed: \(run.stderr)")
        if run.status == .exited(0) { return nil }
        #expect(run.status == .exited(2), "python: \(run.status): \(run.stderr)")
        let line = run.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let match = try #require(line.wholeMatch(of: /shmbus_segment\.py: ([A-Za-z]+): (.*)/), "unexpected stderr: \(line)")
        return (String(match.1), String(match.2))
    }

    @Test func pythonRefusesCorruptedCopiesWithItsOwnTypedErrors() async throws {
        let lineage = try Self.writeLineage(generations: 2)
        let segment = lineage.segments[1]   // copies and appends
        let chunks = try openReader(segment).allChunks()
        let keyed = try #require(chunks.first { !$0.key.isEmpty && $0.count > 0 })
        let at = Int(keyed.recordOffset)
        let L = SegmentLayout.self

        // The untouched copy reads.
        let clean = try Self.corruptedCopy(of: segment) { _ in }
        defer { try? clean.close() }
        #expect(try await Self.verdict(clean) == nil)

        let cases: [(String, (MemoryMapping) -> Void, String, String)] = [
            ("a flipped key byte", { $0.base.storeBytes(of: $0.load(at + L.recordKeyOffset, as: UInt8.self) ^ 0x20, toByteOffset: at + L.recordKeyOffset, as: UInt8.self) },
             "BadRecord", "checksum mismatch"),
            ("a flipped sequence bit", { $0.store($0.load(at + L.recordSequenceOffset, as: UInt64.self) ^ 1, at: at + L.recordSequenceOffset) },
             "BadRecord", "checksum mismatch"),
            ("a flipped generation bit", { $0.store($0.load(L.generationOffset, as: UInt64.self) ^ 4, at: L.generationOffset) },
             "BadHeader", "header checksum mismatch"),
            ("a flipped channel byte", { $0.base.storeBytes(of: UInt8(ascii: "T"), toByteOffset: L.channelOffset, as: UInt8.self) },
             "BadHeader", "header checksum mismatch"),
            ("version 2, checksum recomputed", { $0.store(UInt32(2), at: L.versionOffset); Self.resumHeader($0) },
             "UnsupportedVersion", "format version 2 is not supported"),
            ("a bad magic", { $0.store(UInt64(0x3247_5355_424D_4853), at: L.magicOffset) }, "BadHeader", "magic"),
            ("committed end past the capacity", { $0.store(UInt64(1) << 40, at: L.committedEndOffset) }, "BadHeader", "committed end"),
            ("a record length past the end, checksum recomputed", { $0.store(UInt64(1) << 40, at: at + L.recordLengthOffset); Self.resumRecord($0, at: at) },
             "BadRecord", "length"),
            ("a payload length past the record, checksum recomputed", { $0.store(UInt64.max, at: at + L.recordPayloadLengthOffset); Self.resumRecord($0, at: at) },
             "BadRecord", "payload"),
            ("a key length over 255, checksum recomputed", { $0.store(UInt16(300), at: at + L.recordKeyLengthOffset); Self.resumRecord($0, at: at) },
             "BadRecord", "key length"),
            ("a record magic", { $0.base.storeBytes(of: UInt8(ascii: "X"), toByteOffset: at, as: UInt8.self) }, "BadRecord", "magic"),
            ("retired without a successor", { $0.store(UInt32(1), at: L.stateOffset) }, "BadHeader", "successor"),
        ]
        for (what, edit, error, message) in cases {
            let fd = try Self.corruptedCopy(of: segment, edit)
            defer { try? fd.close() }
            let verdict = try await Self.verdict(fd)
            #expect(verdict?.error == error, "\(what): \(verdict.map { "\($0.error): \($0.message)" } ?? "read without complaint")")
            #expect(verdict?.message.contains(message) == true, "\(what): \(verdict?.message ?? "")")
            // The Swift reader refuses the same copies.
            #expect(throws: SegmentError.self, "\(what)") {
                let reader = try SegmentReader(fd: fd)
                _ = try reader.allChunks()
            }
        }

        // Any single flipped bit in the checksummed part of the header or of a record
        // header, or in its key, is caught (the flags word is not covered: it changes).
        let keyLength = Array(keyed.key.utf8).count
        let spots = Array(stride(from: 0, to: 272, by: 17)) + (0..<(64 + keyLength)).filter { !(4..<8).contains($0) && !(56..<64).contains($0) }.map { at + $0 }
        for (n, spot) in spots.enumerated() {
            let fd = try Self.corruptedCopy(of: segment) { m in
                m.base.storeBytes(of: m.load(spot, as: UInt8.self) ^ UInt8(1 << (n % 8)), toByteOffset: spot, as: UInt8.self)
            }
            defer { try? fd.close() }
            let verdict = try await Self.verdict(fd)
            // BadAttributes is a BadRecord (a flipped attributes_length may be caught by
            // the block's checks before the record checksum).
            #expect(["BadHeader", "BadRecord", "BadAttributes", "UnsupportedVersion"].contains(verdict?.error ?? "none"), "bit \(n % 8) of byte \(spot): \(verdict.map { "\($0.error): \($0.message)" } ?? "not detected")")
        }

        // The payload is not covered (FORMAT.md, "Checksums"): a flipped payload byte
        // reads, with the flipped byte.
        let payloadFlipped = try Self.corruptedCopy(of: segment) { m in
            m.base.storeBytes(of: m.load(Int(keyed.payloadOffset), as: UInt8.self) ^ 0xFF, toByteOffset: Int(keyed.payloadOffset), as: UInt8.self)
        }
        defer { try? payloadFlipped.close() }
        #expect(try await Self.verdict(payloadFlipped) == nil)

        // Seals: an unsealed copy is refused unless the caller says it reads copies.
        let unsealed = try Self.corruptedCopy(of: segment, seal: false) { _ in }
        defer { try? unsealed.close() }
        #expect(try await Self.verdict(unsealed)?.error == "NotSealed")
        #expect(try await Self.verdict(unsealed, ["--no-seals"]) == nil)
        let partly = try Self.corruptedCopy(of: segment, seal: false) { _ in }
        defer { try? partly.close() }
        try Memfd.addSeals(Memfd.segmentSeals & ~shmbus_F_SEAL_FUTURE_WRITE, to: partly)
        #expect(try await Self.verdict(partly)?.error == "NotSealed")
    }
}
