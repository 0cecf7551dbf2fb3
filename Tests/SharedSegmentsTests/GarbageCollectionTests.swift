import Foundation
import SharedSegments
import Testing

@Suite struct GarbageCollectionTests {
    /// Segments by ID, as a registry would resolve them.
    final class Directory {
        var segments: [SegmentID: SegmentWriter] = [:]
        func add(_ segment: SegmentWriter) { segments[segment.id] = segment }
        func resolve(_ id: SegmentID) throws(SegmentError) -> SegmentReader {
            guard let segment = segments[id] else { throw SegmentError(.invalidArgument, "unknown segment \(id)") }
            return try openReader(segment)
        }
    }

    @Test func manualCollectionCopiesLiveChunksAndPreservesSequences() throws {
        let writer = try ChannelWriter(channel: "test/gc", capacity: 1 << 20, policy: .whenFull)
        for i in 0..<20 {
            try [UInt8(i)].withUnsafeBytes { _ = try writer.append($0, key: i % 2 == 0 ? "even" : "odd-\(i)") }
        }
        let old = writer.current
        let rotation = try writer.collectGarbage()
        #expect(rotation.old === old)
        #expect(rotation.new.header.generation == 2)
        #expect(rotation.new.header.baseSequence == 20)
        #expect(rotation.copiedChunks == 11)  // "even" once, ten odd keys
        #expect(rotation.droppedChunks == 0)
        let reader = try openReader(rotation.new)
        let copied = try reader.allChunks()
        #expect(copied.map(\.sequence) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 19, 20])
        #expect(copied.allSatisfy { !$0.isObsolete })
        #expect(try reader.latest(key: "even")?.bytes == [18])
        #expect(try reader.liveState().lastSequence == 20)
        // Not retired until the caller says so (after registering the successor).
        #expect(try openReader(old).liveState().isRetired == false)
        writer.retire(rotation)
        let state = try openReader(old).liveState()
        #expect(state.isRetired)
        #expect(state.successor == rotation.new.id)
        // Appends continue with the next sequence; keys obsolete across the copy.
        try [UInt8(99)].withUnsafeBytes { _ = try writer.append($0, key: "even") }
        #expect(try reader.latest(key: "even")?.sequence == 21)
    }

    @Test func readersFollowRetiredSegmentsWithoutGaps() throws {
        let directory = Directory()
        let writer = try ChannelWriter(channel: "test/follow", capacity: 64 * 1024)
        directory.add(writer.current)
        let cursor = try ChannelCursor(segment: try openReader(writer.current), start: .oldest, resolver: directory.resolve)
        var received: [UInt64] = []
        var rotations = 0
        for i in 1...3000 {
            let bytes = [UInt8](repeating: UInt8(i % 256), count: 100 + i % 300)
            let appended = try bytes.withUnsafeBytes { try writer.append($0) }
            if let rotation = appended.rotation {
                directory.add(rotation.new)
                writer.retire(rotation)
                rotations += 1
            }
            if i % 7 == 0 {
                let (chunks, gaps) = try drain(cursor)
                #expect(gaps.isEmpty)
                received += chunks.map(\.sequence)
            }
        }
        received += try drain(cursor).chunks.map(\.sequence)
        #expect(rotations > 10)
        #expect(received == Array(1...3000))
    }

    @Test func aReaderTwoCollectionsBehindReportsTheExactGap() throws {
        // Small segments and a retention of a quarter: each collection keeps only the
        // newest chunks, so a reader that skips a generation loses some.
        let writer = try ChannelWriter(
            channel: "test/gap", capacity: 16 * 1024, policy: GarbageCollectionPolicy(deadRatio: 2, retainRatio: 0.25))
        let first = try openReader(writer.current)
        let cursor = try ChannelCursor(segment: first, start: .oldest)
        var segments: [SegmentWriter] = [writer.current]
        for i in 1...400 {
            let appended = try [UInt8](repeating: UInt8(i % 256), count: 100).withUnsafeBytes { try writer.append($0) }
            if let rotation = appended.rotation {
                segments.append(rotation.new)
                writer.retire(rotation)
            }
        }
        #expect(segments.count >= 4)
        // Read generation 1 to its end, then jump to the current segment, as a subscriber
        // does when the registry no longer has the successor.
        var delivered: [UInt64] = []
        var missed: UInt64 = 0
        loop: while true {
            switch try cursor.next() {
            case .chunk(let c)?: delivered.append(c.sequence)
            case .gap(let n, _)?: missed += n
            case .retired?:
                cursor.move(to: try openReader(writer.current))
            case nil: break loop
            }
        }
        #expect(missed > 0)
        #expect(UInt64(delivered.count) + missed == 400, "every sequence is delivered or counted missing")
        #expect(delivered == delivered.sorted())
        #expect(delivered.last == 400)
        // The missed ones are exactly those not delivered.
        let expectedMissing = Set(1...400).subtracting(delivered.map(Int.init))
        #expect(UInt64(expectedMissing.count) == missed)
    }

    @Test func startingFromASequenceThatIsGoneIsAGap() throws {
        let writer = try ChannelWriter(channel: "test/fromseq", capacity: 1 << 20, policy: .whenFull)
        for i in 1...10 { try [UInt8(i)].withUnsafeBytes { _ = try writer.append($0, key: i <= 5 ? "same" : "") } }
        let rotation = try writer.collectGarbage()
        writer.retire(rotation)
        // Generation 2 holds 5 (the live "same"), 6...10.
        let cursor = try ChannelCursor(segment: try openReader(rotation.new), start: .sequence(2))
        let first = try cursor.next()
        guard case .gap(let missed, let after)? = first else {
            Issue.record("expected a gap, got \(String(describing: first))")
            return
        }
        #expect(missed == 3)
        #expect(after == 1)
        let rest = try drain(cursor).chunks.map(\.sequence)
        #expect(rest == [5, 6, 7, 8, 9, 10])
        // From now: nothing until the next append.
        let now = try ChannelCursor(segment: try openReader(rotation.new), start: .now)
        #expect(try now.next() == nil)
        try [UInt8(11)].withUnsafeBytes { _ = try writer.append($0) }
        guard case .chunk(let c)? = try now.next() else {
            Issue.record("expected the new chunk")
            return
        }
        #expect(c.sequence == 11)
    }

    @Test func deadBytesTriggerCollectionBeforeTheSegmentIsFull() throws {
        let writer = try ChannelWriter(channel: "test/dead", capacity: 64 * 1024, policy: GarbageCollectionPolicy(deadRatio: 0.25))
        var rotation: ChannelWriter.Rotation?
        var appends = 0
        while rotation == nil && appends < 1000 {
            rotation = try [UInt8](repeating: 1, count: 500).withUnsafeBytes { try writer.append($0, key: "state") }.rotation
            appends += 1
        }
        let area = 64 * 1024 - 4096
        #expect(rotation != nil)
        #expect(appends * 576 < area, "collected at \(appends) appends, before filling \(area) bytes")
        #expect(rotation?.copiedChunks == 1)
    }

    @Test func expiredBytesAreDeadBytesToo() async throws {
        // Chunks with distinct keys, so nothing is obsolete: only their expiry can make
        // the segment mostly dead. They must all be appended before they expire, which
        // the clock read after each append tells (a loaded machine can pause the test
        // for longer than any life chosen here); a run that was too slow proves nothing
        // and is made again, with a longer life.
        for life in [Duration.milliseconds(500), .seconds(5), .seconds(50)] {
            let writer = try ChannelWriter(channel: "test/expired", capacity: 64 * 1024, policy: GarbageCollectionPolicy(deadRatio: 0.25))
            let expiry = RealtimeClock.after(life)
            var inTime = true
            for index in 0..<40 {
                let appended = try [UInt8](repeating: 2, count: 500).withUnsafeBytes { try writer.append($0, key: "k\(index)", expiresAt: expiry) }
                guard RealtimeClock.now() < expiry else {
                    inTime = false
                    break
                }
                #expect(appended.rotation == nil, "live chunks are not dead bytes, however many")
            }
            guard inTime else {
                print("expiredBytesAreDeadBytesToo: 40 appends took longer than \(life); again with a longer life")
                continue
            }
            while RealtimeClock.now() <= expiry { try await Task.sleep(for: .milliseconds(10)) }
            let after = try [UInt8](repeating: 3, count: 10).withUnsafeBytes { try writer.append($0, key: "fresh") }
            let rotation = try #require(after.rotation, "the expired quarter of the segment is collected at the next append")
            #expect(rotation.copiedChunks == 0, "nothing expired is copied")
            #expect(writer.current.header.generation == 2)
            return
        }
        Issue.record("40 appends never fitted in 50 s")
    }
}

extension ChannelCursor.Event: Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.chunk(let x), .chunk(let y)): x.sequence == y.sequence && x.segment == y.segment
        case (.gap(let m, let a1), .gap(let n, let a2)): m == n && a1 == a2
        case (.retired(let x), .retired(let y)): x == y
        default: false
        }
    }
}
