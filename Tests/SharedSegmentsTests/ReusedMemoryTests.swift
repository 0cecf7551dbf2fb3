import Foundation
import Glibc
import SharedSegments
import ShmBusSystem
import Testing

/// A writer that reuses memory (format version 2) and readers that hold leases: in one
/// process, with each reader's lease page registered on the writer as a publisher
/// does it for a subscriber's.
@Suite struct ReusedMemoryTests {
    /// Opens `segment` through a new read-only descriptor, as a registry hands it out.
    func open(_ segment: SegmentWriter, lease: ReadLease?) throws(SegmentError) -> SegmentReader {
        let fd = try Memfd.reopenReadOnly(segment.fileDescriptor)
        defer { try? fd.close() }
        return try SegmentReader(fd: fd, lease: lease)
    }

    func inode(_ segment: SegmentWriter) throws -> UInt64 { UInt64(try segment.fileDescriptor.status().st_ino) }

    /// Appends `count` chunks of `size` bytes of `value`, registering and retiring each
    /// rotation as a publisher does; returns the segments made, in order.
    @discardableResult
    func publish(_ writer: ChannelWriter, count: Int, size: Int, value: UInt8 = 7) throws -> [SegmentWriter] {
        var made: [SegmentWriter] = []
        for _ in 0..<count {
            let appended = try [UInt8](repeating: value, count: size).withUnsafeBytes { try writer.append($0) }
            if let rotation = appended.rotation {
                made.append(rotation.new)
                writer.retire(rotation)
            }
        }
        return made
    }

    @Test func aWriterThatNobodyHoldsCyclesThroughFourSegmentsOfMemory() throws {
        let writer = try ChannelWriter(channel: "test/reuse", capacity: 16 << 10, policy: .whenFull, reusesMemory: true)
        #expect(writer.current.header.version == SegmentLayout.reusableVersion)
        let made = try publish(writer, count: 40, size: 8 << 10)
        #expect(made.count >= 30)
        #expect(made.allSatisfy { $0.header.isReusable })
        let inodes = Set(try made.map(inode))
        #expect(inodes.count <= 4, "\(inodes.count) memfds for \(made.count) generations")
        #expect(writer.reuseCounts.reused >= UInt64(made.count - 4))
        #expect(writer.reuseCounts.held == 0)
        // A writer that does not reuse makes new memory every time.
        let plain = try ChannelWriter(channel: "test/reuse-not", capacity: 16 << 10, policy: .whenFull)
        let fresh = try publish(plain, count: 40, size: 8 << 10)
        #expect(Set(try fresh.map(inode)).count == fresh.count)
        #expect(plain.current.header.version == SegmentLayout.version)
    }

    @Test func aChunkHeldThroughALeaseKeepsItsBytesWhileTheWriterMovesOn() throws {
        let writer = try ChannelWriter(channel: "test/reuse-held", capacity: 16 << 10, policy: .whenFull, reusesMemory: true)
        let lease = try ReadLease()
        _ = try writer.addLease(lease.fileDescriptor)
        try publish(writer, count: 1, size: 8 << 10, value: 0xA1)
        var reader: SegmentReader? = try open(writer.current, lease: lease)
        var held: Chunk? = try reader!.allChunks().first
        let generation = reader!.header.generation
        #expect(lease.heldGenerations == [generation])
        reader = nil
        // Forty rotations later, with bytes of another value everywhere else.
        let made = try publish(writer, count: 40, size: 8 << 10, value: 0x5C)
        let intact = held!.withUnsafeBytes { $0.allSatisfy { $0 == 0xA1 } }
        #expect(intact, "the held chunk changed under its view")
        #expect(writer.reuseCounts.held > 0)
        #expect(writer.reuseCounts.reused > 0)
        #expect(Set(try made.map(inode)).count <= 5)
        // Let go, and the memory goes back into the cycle.
        held = nil
        #expect(lease.heldGenerations.isEmpty)
        let before = writer.reuseCounts.reused
        try publish(writer, count: 20, size: 8 << 10)
        #expect(writer.reuseCounts.reused > before)
    }

    @Test func aReaderThatComesAfterTheWriterAskedForTheMemoryIsToldSo() throws {
        let writer = try ChannelWriter(channel: "test/reuse-late", capacity: 16 << 10, policy: .whenFull, reusesMemory: true)
        let holder = try ReadLease()
        let late = try ReadLease()
        _ = try writer.addLease(holder.fileDescriptor)
        _ = try writer.addLease(late.fileDescriptor)
        let first = writer.current
        let pinned = try open(first, lease: holder)
        try publish(writer, count: 12, size: 8 << 10)
        // The writer wanted the first generation's memory back, and the holder kept it.
        #expect(try pinned.liveState().isReclaimed)
        #expect(writer.reuseCounts.held > 0)
        #expect(throws: SegmentError.self) { try open(first, lease: late) }
        do {
            _ = try open(first, lease: late)
        } catch {
            #expect(error.kind == .reclaimed)
        }
        #expect(late.heldGenerations.isEmpty)
        withExtendedLifetime(pinned) {}
    }

    @Test func aReusedSegmentIsNotReadWithoutALease() throws {
        let writer = try ChannelWriter(channel: "test/reuse-nolease", capacity: 16 << 10, reusesMemory: true)
        try publish(writer, count: 1, size: 100)
        do {
            _ = try open(writer.current, lease: nil)
            Issue.record("a version 2 segment opened without a lease")
        } catch {
            #expect(error.kind == .leaseRequired)
        }
        // Tools that read only the header and the counters may.
        let fd = try Memfd.reopenReadOnly(writer.current.fileDescriptor)
        let reader = try SegmentReader(fd: fd, options: .headersOnly)
        #expect(reader.header.isReusable)
        #expect(reader.hold == nil)
        #expect(try reader.liveState().recordCount == 1)
    }

    @Test func aCursorWithALeaseReadsEverySequenceAcrossReusedMemory() throws {
        let writer = try ChannelWriter(channel: "test/reuse-cursor", capacity: 32 << 10, policy: .whenFull, reusesMemory: true)
        let lease = try ReadLease()
        _ = try writer.addLease(lease.fileDescriptor)
        var segments: [SegmentID: SegmentWriter] = [writer.current.id: writer.current]
        let cursor = try ChannelCursor(segment: try open(writer.current, lease: lease), start: .oldest) {
            (id) throws(SegmentError) -> SegmentReader in
            guard let segment = segments[id] else { throw SegmentError(.invalidArgument, "unknown segment \(id)") }
            return try open(segment, lease: lease)
        }
        var received: [UInt64] = []
        var intact = true
        for i in 1...600 {
            let bytes = [UInt8](repeating: UInt8(i % 251), count: 1000 + i % 3000)
            let appended = try bytes.withUnsafeBytes { try writer.append($0) }
            if let rotation = appended.rotation {
                segments[rotation.new.id] = rotation.new
                writer.retire(rotation)
            }
            if i % 3 == 0 {
                let (chunks, gaps) = try drain(cursor)
                #expect(gaps.isEmpty)
                for chunk in chunks {
                    let value = UInt8(chunk.sequence % 251)
                    if !chunk.withUnsafeBytes({ $0.allSatisfy { $0 == value } }) { intact = false }
                }
                received += chunks.map(\.sequence)
            }
        }
        received += try drain(cursor).chunks.map(\.sequence)
        #expect(received == Array(1...600))
        #expect(intact)
        #expect(writer.reuseCounts.reused > 20)
        #expect(Set(try segments.values.map(inode)).count <= 5)
    }

    @Test func aLeaseNamesEightGenerationsInSlotsAndTheRestInARange() throws {
        let lease = try ReadLease()
        let writer = try ChannelWriter(channel: "test/reuse-slots", capacity: 16 << 10, policy: .whenFull, reusesMemory: true)
        _ = try writer.addLease(lease.fileDescriptor)
        // Twelve generations, a reader of each.
        var segments = [writer.current]
        segments += try publish(writer, count: 12, size: 8 << 10)
        var readers = try segments.prefix(12).map { try open($0, lease: lease) }
        let generations = readers.map(\.header.generation)
        #expect(lease.heldGenerations.isSuperset(of: generations))
        // The first eight have slots; four more make a range, holding what is between.
        #expect(lease.heldGenerations == Set(generations))
        readers.removeFirst(2)
        #expect(lease.heldGenerations == Set(generations.dropFirst(2)))
        readers.removeLast(4)
        #expect(lease.heldGenerations == Set(generations.dropFirst(2).dropLast(4)))
        readers.removeAll()
        #expect(lease.heldGenerations.isEmpty)
    }

    @Test func anOldChunkKeptInASlotKeepsOnlyItsOwnMemoryFromReuse() throws {
        let writer = try ChannelWriter(channel: "test/reuse-old", capacity: 16 << 10, policy: .whenFull, reusesMemory: true)
        let lease = try ReadLease()
        _ = try writer.addLease(lease.fileDescriptor)
        let kept = try open(writer.current, lease: lease).allChunks()
        var reading = try open(writer.current, lease: lease)
        for _ in 0..<40 {
            let appended = try [UInt8](repeating: 3, count: 8 << 10).withUnsafeBytes { try writer.append($0) }
            if let rotation = appended.rotation {
                writer.retire(rotation)
                // The reader moves on, as a cursor does, holding the current generation.
                reading = try open(rotation.new, lease: lease)
            }
        }
        #expect(writer.reuseCounts.reused >= 30, "\(writer.reuseCounts)")
        withExtendedLifetime((kept, reading)) {}
    }

    @Test func leasePagesThatAreNotSealedPagesAreRefused() throws {
        let writer = try ChannelWriter(channel: "test/reuse-pages", capacity: 16 << 10, reusesMemory: true)
        let unsealed = try Memfd.create(name: "not-a-lease", size: SegmentLayout.leaseSize)
        #expect(throws: SegmentError.self) { try writer.addLease(unsealed) }
        let large = try Memfd.create(name: "too-large", size: 2 * SegmentLayout.leaseSize)
        try Memfd.addSeals(Memfd.leaseSeals, to: large)
        #expect(throws: SegmentError.self) { try writer.addLease(large) }
        let noMagic = try Memfd.create(name: "no-magic", size: SegmentLayout.leaseSize)
        try Memfd.addSeals(Memfd.leaseSeals, to: noMagic)
        #expect(throws: SegmentError.self) { try writer.addLease(noMagic) }
        // And a writer that does not reuse memory takes none.
        let plain = try ChannelWriter(channel: "test/reuse-pages-not", capacity: 16 << 10)
        #expect(throws: SegmentError.self) { try plain.addLease(try ReadLease().fileDescriptor) }
        #expect(try writer.addLease(try ReadLease().fileDescriptor) > 0)
        #expect(writer.leaseCount == 1)
    }
}
