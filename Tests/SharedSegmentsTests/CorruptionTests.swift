import Foundation
import Glibc
import SharedSegments
import SystemPackage
import TestSupport
import Testing

/// Whatever the bytes of a segment, a reader returns errors or valid chunks: it never
/// traps and never reads outside the mapping (run under --sanitize=address to check
/// the second half).
@Suite struct CorruptionTests {
    struct Xorshift {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// A real segment: keyed, obsolete, expiring and empty chunks, then retired.
    static func template() throws -> (bytes: [UInt8], records: [Int], committedEnd: Int) {
        let writer = try ChannelWriter(channel: "test/corrupt", capacity: 64 * 1024, policy: .whenFull)
        var records: [Int] = []
        for i in 0..<40 {
            let bytes = [UInt8](repeating: UInt8(i), count: (i * 53) % 700)
            let key = i % 3 == 0 ? "" : "key\(i % 5)"
            let expiry: UInt64 = i % 7 == 0 ? RealtimeClock.now() - 1 : 0
            let appended = try bytes.withUnsafeBytes { try writer.append($0, key: key, expiresAt: expiry) }
            records.append(Int(appended.recordOffset))
        }
        let rotation = try writer.collectGarbage()
        writer.retire(rotation)
        let reader = try openReader(rotation.old)
        let end = Int(try reader.liveState().committedEnd)
        return (Array(UnsafeRawBufferPointer(start: reader.mapping.base, count: 64 * 1024)), records, end)
    }

    @Test func randomlyMutatedSegmentsNeverCrashTheReader() async throws {
        try await onOwnThread { try Self.mutateAndRead() }
    }

    static func mutateAndRead() throws {
        let seed = ProcessInfo.processInfo.environment["SHMBUS_FUZZ_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 1...UInt64.max)
        let cases = ProcessInfo.processInfo.environment["SHMBUS_FUZZ_CASES"].flatMap(Int.init) ?? 100_000
        print("CorruptionTests seed \(seed) (set SHMBUS_FUZZ_SEED to reproduce), \(cases) cases")
        var random = Xorshift(state: seed)
        let (template, records, committedEnd) = try Self.template()
        let fd = try Memfd.create(name: "corrupt", size: template.count)
        defer { try? fd.close() }
        let scratch = try MemoryMapping(fd: fd, length: template.count, writable: true)
        var outcomes: [String: Int] = [:]
        var chunksRead = 0
        // Interesting places: header fields, record headers, and anywhere below the end.
        let headerSpots: [Int] = [0, 8, 12, 16, 24, 40, 48, 68, 72, 272, 384, 392, 512, 520]
        let recordFields: [Int] = [0, 4, 8, 40, 48, 52, 56]
        var hotSpots = headerSpots
        for record in records {
            for field in recordFields { hotSpots.append(record + field) }
        }
        for _ in 0..<cases {
            template.withUnsafeBytes { scratch.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            for _ in 0..<(1 + random.below(6)) {
                let position: Int
                switch random.below(3) {
                case 0: position = hotSpots[random.below(hotSpots.count)] + random.below(8)
                case 1: position = random.below(committedEnd + 64)
                default: position = random.below(600)
                }
                let value: UInt8 = switch random.below(4) {
                case 0: 0
                case 1: 0xFF
                case 2: scratch.base.load(fromByteOffset: position, as: UInt8.self) ^ (1 << UInt8(random.below(8)))
                default: UInt8(truncatingIfNeeded: random.next())
                }
                scratch.base.storeBytes(of: value, toByteOffset: position, as: UInt8.self)
            }
            do {
                let reader = try SegmentReader(fd: fd, options: .init(requireSeals: false))
                _ = try reader.liveState()
                // Read every chunk through a cursor up to the end (the template is
                // retired: the cursor stops there), and touch every payload byte.
                let cursor = try ChannelCursor(segment: reader, start: .oldest)
                var steps = 0
                while steps < 200, let event = try cursor.next() {
                    steps += 1
                    if case .retired = event { break }
                    if case .chunk(let chunk) = event {
                        chunksRead += 1
                        let sum = chunk.withUnsafeBytes { $0.reduce(0) { $0 &+ UInt32($1) } }
                        _ = sum
                    }
                }
                _ = try reader.latest(key: "key\(random.below(6))")
                outcomes["ok", default: 0] += 1
            } catch {
                outcomes["\(error.kind)", default: 0] += 1
            }
        }
        print("CorruptionTests outcomes: \(outcomes.sorted { $0.key < $1.key }), chunks read \(chunksRead)")
        #expect(outcomes.values.reduce(0, +) == cases)
        #expect(outcomes["ok", default: 0] > 0, "some mutations land in padding or payloads and still read")
        #expect(outcomes.count > 2, "mutations produce several kinds of errors")
    }
}
