import CShmBusLinux
import Foundation
import Glibc
import Locking
@testable import SharedSegments
import ShmBusSystem
import Testing

/// Prefaulting faults segment memory in ahead of the writer, never changes a byte a
/// reader can see, falls back when the kernel refuses `MADV_POPULATE_WRITE`, and hands
/// the next generation memory that nobody has mapped before.
@Suite struct PrefaultTests {
    /// Bytes of this process's page tables for the writable mappings of `channel`'s
    /// segments (the `Rss` of each `rw-s` mapping of `memfd:shmbus:<channel>`).
    static func writerResidentBytes(_ channel: String) throws -> Int {
        guard let file = FileHandle(forReadingAtPath: "/proc/self/smaps") else { throw SegmentError(.invalidArgument, "no /proc/self/smaps") }
        defer { try? file.close() }
        let smaps = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        var inMapping = false
        var total = 0
        for line in smaps.split(separator: "\n") {
            if line.first?.isHexDigit == true, line.contains("-") {
                let fields = line.split(separator: " ")
                inMapping = fields.count > 1 && fields[1] == "rw-s" && line.hasSuffix("/memfd:shmbus:\(channel) (deleted)")
            } else if inMapping, line.hasPrefix("Rss:") {
                total += (Int(line.split(separator: " ")[1]) ?? 0) * 1024
            }
        }
        return total
    }

    /// Bytes of the memfd's pages allocated (`fstat`'s `st_blocks`), mapped or not.
    static func allocatedBytes(_ fd: UnixFileDescriptor) -> Int {
        var info = stat()
        _ = fd.withRawValue { fstat($0, &info) }
        return Int(info.st_blocks) * 512
    }

    /// Waits (up to 20 s) until `progress` has `bytes` bytes ready or gave up.
    static func waitUntilPrepared(_ progress: PrefaultProgress, _ bytes: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while progress.preparedBytes < bytes, !progress.gaveUp, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    static func channel(_ name: String) -> String { "test/prefault-\(name)-\(UInt32.random(in: 0...UInt32.max))" }

    static func payload(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 >> 3) &* 31 &+ $0 &+ seed) }
    }

    @Test func theWindowAheadIsFaultedInAndAChunkOfPreparedSizeLandsThere() async throws {
        let channel = Self.channel("window")
        let writer = try ChannelWriter(channel: channel, capacity: 16 << 20, policy: .whenFull)
        let prefaulter = Prefaulter()
        writer.prefault = PrefaultPlan(prefaulter: prefaulter, bytesAhead: 1 << 20)
        let size = 6 << 20
        var ready = writer.prepare(forPayload: UInt64(size))
        let deadline = ContinuousClock.now + .seconds(20)
        while !ready, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
            ready = writer.prepare(forPayload: UInt64(size))
        }
        #expect(ready)
        #expect(prefaulter.method == .populateWrite, "\(prefaulter.refused)")
        // The writer's page tables hold the window before a byte of the chunk is written.
        #expect(try Self.writerResidentBytes(channel) >= size, "the announced chunk")
        let bytes = Self.payload(size, seed: 1)
        let appended = try bytes.withUnsafeBytes { try writer.append($0) }
        let chunk = try #require(try openReader(writer.current).allChunks().first)
        #expect(chunk.sequence == appended.sequence)
        #expect(chunk.bytes == bytes)
    }

    /// A chunk larger than the window, written in place: the writer faulted those pages
    /// itself, so the prefaulter starts past them (it once walked all of them again,
    /// on the other core while readers mapped them), always at a page boundary (a
    /// start inside a page makes `madvise` refuse, which switched the prefaulter to
    /// `fallocate` for good).
    @Test func pagesTheWriterWroteAreNotFaultedAgainAndStepsStartOnAPage() async throws {
        let channel = Self.channel("skip")
        let starts = Lock<[Int]>([])
        let writer = try ChannelWriter(channel: channel, capacity: 32 << 20, policy: .whenFull)
        let base = Int(bitPattern: writer.current.mapping.base)
        let prefaulter = Prefaulter(populate: { address, length in
            starts.withLock { $0.append(Int(bitPattern: address) - base) }
            return shmbus_populate_write(address, length) == 0 ? 0 : errno
        })
        writer.prefault = PrefaultPlan(prefaulter: prefaulter, bytesAhead: 1 << 20)
        try await Self.waitUntilPrepared(writer.current.prefault, 1 << 20)
        starts.withLock { $0.removeAll() }
        let reserved = try writer.reserve(length: (8 << 20) + 100)
        reserved.buffer.initializeMemory(as: UInt8.self, repeating: 7)
        let appended = try writer.commit(reserved)
        try await Self.waitUntilPrepared(writer.current.prefault, Int(appended.recordEnd) + (1 << 20) - SegmentLayout.pageSize)
        let after = starts.withLock { $0 }
        #expect(!after.isEmpty, "the window past the chunk was faulted in")
        let lastWrittenPage = Int(appended.recordEnd) / SegmentLayout.pageSize * SegmentLayout.pageSize
        #expect(after.allSatisfy { $0 >= lastWrittenPage }, "nothing below the chunk's last page: \(after)")
        #expect(after.allSatisfy { $0 % SegmentLayout.pageSize == 0 }, "every step starts on a page: \(after)")
        #expect(prefaulter.method == .populateWrite, "never refused: \(prefaulter.refused)")
    }

    @Test func prefaultingOverCommittedRecordsChangesNoByte() async throws {
        let channel = Self.channel("bytes")
        let writer = try ChannelWriter(channel: channel, capacity: 4 << 20, policy: .whenFull)
        var sent: [[UInt8]] = []
        for i in 0..<40 {
            let bytes = Self.payload(20_000 + i * 911, seed: i)
            sent.append(bytes)
            try bytes.withUnsafeBytes { _ = try writer.append($0) }
        }
        let reader = try openReader(writer.current)
        let views = try reader.allChunks()
        // Both methods, over the whole segment: committed records, header and free space.
        for prefaulter in [Prefaulter(), Prefaulter(populate: { _, _ in EINVAL })] {
            let segment = writer.current
            let progress = PrefaultProgress()
            prefaulter.prefault(segment.mapping, fd: segment.fileDescriptor, progress: progress, upTo: Int(segment.capacity))
            try await Self.waitUntilPrepared(progress, Int(segment.capacity))
            #expect(progress.preparedBytes == Int(segment.capacity))
        }
        #expect(views.map(\.bytes) == sent, "the views a reader holds")
        #expect(try openReader(writer.current).allChunks().map(\.bytes) == sent, "a fresh reader")
    }

    @Test func whenPopulateWriteIsRefusedFallocateAllocatesThePages() async throws {
        let channel = Self.channel("fallback")
        let writer = try ChannelWriter(channel: channel, capacity: 8 << 20, policy: .whenFull)
        let asked = Lock(0)
        let prefaulter = Prefaulter(populate: { _, _ in
            asked.withLock { $0 += 1 }
            return EINVAL
        })
        writer.prefault = PrefaultPlan(prefaulter: prefaulter, bytesAhead: 4 << 20)
        try await Self.waitUntilPrepared(writer.current.prefault, 4 << 20)
        #expect(writer.current.prefault.preparedBytes >= 4 << 20)
        #expect(prefaulter.method == .allocate)
        #expect(prefaulter.refused.map(\.errno) == [.invalidArgument])
        #expect(prefaulter.refused.first?.call == "madvise(MADV_POPULATE_WRITE)")
        #expect(asked.withLock { $0 } == 1, "a refusal is not asked again")
        // fallocate allocated the pages without mapping them.
        #expect(Self.allocatedBytes(writer.current.fileDescriptor) >= 4 << 20)
        #expect(try Self.writerResidentBytes(channel) < 4 << 20)
        let bytes = Self.payload(3 << 20, seed: 7)
        try bytes.withUnsafeBytes { _ = try writer.append($0) }
        #expect(try openReader(writer.current).allChunks().map(\.bytes) == [bytes])
    }

    @Test func whenBothAreRefusedTheWriterFaultsItsOwnPages() async throws {
        let writer = try ChannelWriter(channel: Self.channel("none"), capacity: 4 << 20, policy: .whenFull)
        let prefaulter = Prefaulter(populate: { _, _ in ENOSYS }, allocate: { _, _, _ in EOPNOTSUPP })
        writer.prefault = PrefaultPlan(prefaulter: prefaulter, bytesAhead: 1 << 20)
        try await Self.waitUntilPrepared(writer.current.prefault, 1 << 20)
        #expect(prefaulter.method == .none)
        #expect(prefaulter.refused.map(\.errno) == [.noFunction, .notSupported])
        #expect(writer.current.prefault.gaveUp)
        #expect(writer.prepare(forPayload: 1 << 20), "nothing to wait for")
        let bytes = Self.payload(1 << 20, seed: 3)
        try bytes.withUnsafeBytes { _ = try writer.append($0) }
        #expect(try openReader(writer.current).allChunks().map(\.bytes) == [bytes])
    }

    @Test func theNextGenerationIsMadeInThePreparedMemory() async throws {
        let channel = Self.channel("spare")
        let writer = try ChannelWriter(channel: channel, capacity: 1 << 20, policy: .whenFull)
        writer.prefault = PrefaultPlan(prefaulter: Prefaulter(), bytesAhead: 256 << 10)
        let chunk = 100_000
        // Until the writer has rotated once: only then does it prepare by itself.
        var i = 0
        while writer.current.header.generation == 1 {
            try Self.payload(chunk, seed: i).withUnsafeBytes { _ = try writer.append($0) }
            i += 1
        }
        // Fill the second generation up to its last window: the spare is made then.
        while writer.current.freeBytes > writer.prefaultWindow {
            try Self.payload(chunk, seed: i).withUnsafeBytes { _ = try writer.append($0) }
            i += 1
        }
        let spare = try #require(writer.spareMemory)
        try await Self.waitUntilPrepared(spare.prefault, Int(writer.prefaultWindow))
        #expect(spare.prefault.preparedBytes >= Int(writer.prefaultWindow))
        let before = writer.current.header.generation
        while writer.current.header.generation == before {
            try Self.payload(chunk, seed: i).withUnsafeBytes { _ = try writer.append($0) }
            i += 1
        }
        #expect(writer.current.prefault === spare.prefault, "the new generation is the prepared memory")
        #expect(writer.current.fileDescriptor === spare.fileDescriptor)
        #expect(writer.spareMemory == nil, "used once")
        // It is sealed and reads like any other generation.
        let reader = try openReader(writer.current)
        #expect(reader.header.generation == before + 1)
        let last = try #require(try reader.allChunks().last)
        #expect(last.bytes == Self.payload(chunk, seed: i - 1))
    }

    @Test func segmentsReadersHoldNeverChangeAndNoMemoryIsReused() async throws {
        let channel = Self.channel("immutable")
        let writer = try ChannelWriter(channel: channel, capacity: 1 << 20, policy: .whenFull)
        writer.prefault = PrefaultPlan(prefaulter: Prefaulter(), bytesAhead: 512 << 10)
        var held: [(views: [Chunk], bytes: [[UInt8]])] = []
        var inodes: Set<UInt> = []
        var i = 0
        for _ in 0..<6 {
            let generation = writer.current.header.generation
            while writer.current.header.generation == generation {
                // Readers map the segment before and while it fills.
                try Self.payload(60_000 + i % 7 * 1000, seed: i).withUnsafeBytes { _ = try writer.append($0, key: "k\(i % 3)") }
                i += 1
                if writer.current.header.generation == generation, i % 4 == 0 {
                    let views = try openReader(writer.current).allChunks()
                    held.append((views, views.map(\.bytes)))
                }
                // Give the prefaulter time to run into the memory being written.
                if i % 5 == 0 { try await Task.sleep(for: .milliseconds(1)) }
            }
            var info = stat()
            _ = writer.current.fileDescriptor.withRawValue { fstat($0, &info) }
            inodes.insert(UInt(info.st_ino))
        }
        #expect(inodes.count == 6, "every generation is a memfd of its own")
        #expect(!held.isEmpty)
        for (views, bytes) in held {
            #expect(views.map(\.bytes) == bytes)
        }
    }
}
