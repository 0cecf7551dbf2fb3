import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import SystemPackage
import Testing

/// A reader of the writer's current segment through a read-only descriptor, as another
/// process would get it.
func openReader(_ segment: SegmentWriter) throws(SegmentError) -> SegmentReader {
    let fd = try Memfd.reopenReadOnly(segment.fileDescriptor)
    defer { try? fd.close() }
    return try SegmentReader(fd: fd)
}

/// Reads every live chunk through a cursor that follows successors among `segments`.
func drain(_ cursor: ChannelCursor) throws -> (chunks: [Chunk], gaps: [(UInt64, UInt64)]) {
    var chunks: [Chunk] = []
    var gaps: [(UInt64, UInt64)] = []
    while let event = try cursor.next() {
        switch event {
        case .chunk(let c): chunks.append(c)
        case .gap(let missed, let after): gaps.append((missed, after))
        case .retired: Issue.record("unexpected retired event")
        }
    }
    return (chunks, gaps)
}

@Suite struct WriterReaderTests {
    @Test func appendedChunksReadBackInPlace() throws {
        let writer = try ChannelWriter(channel: "test/basic", capacity: 1 << 20)
        var sent: [[UInt8]] = []
        for i in 0..<100 {
            let bytes = (0..<(i * 37 % 500)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            sent.append(bytes)
            let appended = try bytes.withUnsafeBytes { try writer.append($0) }
            #expect(appended.sequence == UInt64(i + 1))
            #expect(appended.payloadOffset % 64 == 0)
        }
        let reader = try openReader(writer.current)
        #expect(reader.header.channel == "test/basic")
        #expect(reader.header.generation == 1)
        let chunks = try reader.allChunks()
        #expect(chunks.map(\.bytes) == sent)
        #expect(chunks.map(\.sequence) == Array(1...100))
        let state = try reader.liveState()
        #expect(state.lastSequence == 100)
        #expect(state.recordCount == 100)
        #expect(!state.isRetired)
        // Zero copy: the view points into the mapping, at the payload's offset.
        let chunk = chunks[42]
        chunk.withUnsafeBytes { view in
            #expect(view.baseAddress == UnsafeRawPointer(reader.mapping.base) + Int(chunk.payloadOffset))
        }
        let data = chunk.data
        data.withUnsafeBytes { view in
            #expect(view.baseAddress == UnsafeRawPointer(reader.mapping.base) + Int(chunk.payloadOffset))
        }
        #expect([UInt8](data) == sent[42])
    }

    @Test func dataOutlivesEverythingElse() throws {
        var data: Data?
        do {
            let writer = try ChannelWriter(channel: "test/lifetime", capacity: 1 << 16)
            try Array("still here".utf8).withUnsafeBytes { _ = try writer.append($0) }
            let reader = try openReader(writer.current)
            data = try reader.allChunks().first?.data
        }
        // Writer, reader and descriptors are gone; the mapping lives on in the Data.
        #expect(data.map { String(decoding: $0, as: UTF8.self) } == "still here")
    }

    @Test func reserveWritesInPlaceAndCommitPublishes() throws {
        let writer = try ChannelWriter(channel: "test/reserve", capacity: 1 << 20)
        let reader = try openReader(writer.current)
        let reservation = try writer.reserve(length: 1000, key: "frame")
        for i in 0..<1000 { reservation.buffer[i] = UInt8(i % 251) }
        #expect(try reader.allChunks().isEmpty, "nothing is visible before commit")
        #expect(throws: SegmentError.self) { _ = try writer.reserve(length: 10) }
        let appended = try writer.commit(reservation)
        #expect(throws: SegmentError.self) { _ = try writer.commit(reservation) }
        let chunks = try reader.allChunks()
        #expect(chunks.count == 1)
        #expect(chunks[0].key == "frame")
        #expect(chunks[0].bytes == (0..<1000).map { UInt8($0 % 251) })
        #expect(chunks[0].payloadOffset == appended.payloadOffset)
        // An abandoned reservation leaves nothing behind.
        let abandoned = try writer.reserve(length: 10)
        writer.abandon(abandoned)
        #expect(try reader.allChunks().count == 1)
        _ = try writer.reserve(length: 10)
    }

    @Test func publishingAKeyAgainObsoletesThePreviousChunk() throws {
        let writer = try ChannelWriter(channel: "test/keys", capacity: 1 << 20)
        for (i, key) in ["a", "b", "a", "c", "a", ""].enumerated() {
            try [UInt8(i)].withUnsafeBytes { _ = try writer.append($0, key: key) }
        }
        let reader = try openReader(writer.current)
        let chunks = try reader.allChunks()
        #expect(chunks.map(\.isObsolete) == [true, false, true, false, false, false])
        #expect(try reader.latest(key: "a")?.bytes == [4])
        #expect(try reader.latest(key: "b")?.sequence == 2)
        #expect(try reader.latest(key: "missing") == nil)
        try [UInt8(9)].withUnsafeBytes { _ = try writer.append($0, key: "b") }
        #expect(try reader.latest(key: "b")?.bytes == [9], "the index follows new commits")
        let cursor = try ChannelCursor(segment: reader, start: .oldest)
        let (live, gaps) = try drain(cursor)
        #expect(live.map(\.bytes) == [[3], [4], [5], [9]])
        #expect(gaps.isEmpty)
        #expect(cursor.skippedChunks == 3)
        let state = try reader.liveState()
        #expect(state.liveChunks == 4)
        // A record with a 1-byte key and a 1-byte payload: 64 header + key padded to 128, + payload padded to 192.
        #expect(state.deadBytes == 3 * 192)
    }

    @Test func expiredChunksAreSkipped() async throws {
        let writer = try ChannelWriter(channel: "test/expiry", capacity: 1 << 20)
        try [UInt8(1)].withUnsafeBytes { _ = try writer.append($0, key: "k", expiresAt: RealtimeClock.now() - 1) }
        try [UInt8(2)].withUnsafeBytes { _ = try writer.append($0, expiresAt: RealtimeClock.after(.seconds(3600))) }
        let reader = try openReader(writer.current)
        #expect(try reader.latest(key: "k") == nil)
        // "soon" is live until its expiry, then skipped. Whether a look came before the
        // expiry is told by the clock read after the look, not by how long the test
        // usually takes: on a loaded machine a look can come late, and then it proves
        // nothing, so the chunk is published again with a longer life.
        var soon: UInt64 = 0
        var seenLive = false
        for life in [Duration.milliseconds(500), .seconds(5), .seconds(50)] {
            soon = RealtimeClock.after(life)
            try [UInt8(3)].withUnsafeBytes { _ = try writer.append($0, key: "soon", expiresAt: soon) }
            let early = try reader.latest(key: "soon")
            if RealtimeClock.now() < soon {
                #expect(early?.bytes == [3], "live until its expiry")
                seenLive = true
                break
            }
            print("expiredChunksAreSkipped: looked only after a life of \(life); again with a longer one")
        }
        #expect(seenLive, "never looked within 50 s of publishing")
        while RealtimeClock.now() <= soon { try await Task.sleep(for: .milliseconds(10)) }
        #expect(try reader.latest(key: "soon") == nil)
        let (live, _) = try drain(try ChannelCursor(segment: reader, start: .oldest))
        #expect(live.map(\.bytes) == [[2]])
    }

    @Test func aChunkTooBigForTheCapacityIsRefusedWithBothSizes() throws {
        let writer = try ChannelWriter(channel: "test/big", capacity: 64 * 1024)
        let error = #expect(throws: SegmentError.self) { _ = try writer.reserve(length: 70_000) }
        #expect(error?.kind == .capacityExceeded)
        #expect(error?.message.contains("70000") == true && error?.message.contains("65536") == true)
        #expect(writer.maximumPayload == 65536 - 4096 - 64)
        _ = try writer.reserve(length: writer.maximumPayload)
    }

    @Test func payloadsFarBeyondSixtyFourMiBWork() throws {
        let size: UInt64 = 300 << 20
        let writer = try ChannelWriter(channel: "test/huge", capacity: size + (1 << 20))
        let reservation = try writer.reserve(length: size, key: "blob")
        let words = reservation.buffer.bindMemory(to: UInt64.self)
        for i in stride(from: 0, to: words.count, by: 4096) { words[i] = UInt64(i) }
        try writer.commit(reservation)
        let reader = try openReader(writer.current)
        let chunk = try #require(try reader.latest(key: "blob"))
        #expect(UInt64(chunk.count) == size)
        chunk.withUnsafeBytes { view in
            let words = view.bindMemory(to: UInt64.self)
            var ok = true
            for i in stride(from: 0, to: words.count, by: 4096) where words[i] != UInt64(i) { ok = false }
            #expect(ok)
        }
    }

    @Test func invalidChannelNamesAndKeysAreRefused() {
        for name in ["", "/lead", "trail/", "a//b", "a/../b", "..", "sp ace", "ü", String(repeating: "x", count: 201)] {
            #expect(ChannelName.problem(with: name) != nil, "\(name)")
            #expect(throws: SegmentError.self) { _ = try ChannelWriter(channel: name, capacity: 1 << 16) }
        }
        for name in ["a", "camera/0", "x.y-z_w/1.2", String(repeating: "x", count: 200), "a/.b", "..."] {
            #expect(ChannelName.problem(with: name) == nil, "\(name)")
        }
        #expect(throws: SegmentError.self) {
            let writer = try ChannelWriter(channel: "test/key", capacity: 1 << 16)
            _ = try writer.reserve(length: 1, key: String(repeating: "k", count: 256))
        }
    }
}
