import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBusSystem
import Testing

/// What the kernel lets a reader do with a sealed segment: nothing that changes it.
@Suite struct SealTests {
    static func sealedSegment() throws -> ChannelWriter {
        let writer = try ChannelWriter(channel: "test/seals", capacity: 1 << 16)
        try Array("before".utf8).withUnsafeBytes { _ = try writer.append($0) }
        return writer
    }

    /// Descriptors a reader might hold: the read-only one the registry hands out, and
    /// even a read-write one (a writer's own descriptor passed around by mistake).
    static func descriptors(of writer: ChannelWriter) throws -> [(String, UnixFileDescriptor)] {
        let readOnly = try Memfd.reopenReadOnly(writer.current.fileDescriptor)
        // Reopening read-write is allowed; the seals stop the writes.
        let readWrite = try UnixFileDescriptor.open("/proc/self/fd/\(writer.current.fileDescriptor.rawValue)", O_RDWR)
        return [("O_RDONLY", readOnly), ("O_RDWR", readWrite)]
    }

    @Test func theSegmentCarriesAllFourSeals() throws {
        let writer = try Self.sealedSegment()
        let seals = try #require(Memfd.seals(of: writer.current.fileDescriptor))
        for seal in [shmbus_F_SEAL_SHRINK, shmbus_F_SEAL_GROW, shmbus_F_SEAL_FUTURE_WRITE, shmbus_F_SEAL_SEAL] {
            #expect(seals & seal != 0)
        }
        #expect(Memfd.isMemfd(writer.current.fileDescriptor))
        // F_SEAL_SEAL: no more seals can be added or removed.
        let refused = #expect(throws: SystemError.self) { try writer.current.fileDescriptor.addSeals(.write) }
        #expect(refused?.errno == .notPermitted)
    }

    @Test func writableMappingsAreRefused() throws {
        let writer = try Self.sealedSegment()
        for (name, descriptor) in try Self.descriptors(of: writer) {
            let fd = descriptor.rawValue
            let address = mmap(nil, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            #expect(address == MAP_FAILED, "\(name)")
            // O_RDONLY: EACCES (not open for writing); O_RDWR: EPERM (F_SEAL_FUTURE_WRITE).
            #expect(errno == (name == "O_RDWR" ? EPERM : EACCES), "\(name): errno \(errno)")
        }
    }

    @Test func readOnlyMappingsCannotBeMadeWritable() throws {
        let writer = try Self.sealedSegment()
        for (name, descriptor) in try Self.descriptors(of: writer) {
            let fd = descriptor.rawValue
            let address = try #require(mmap(nil, 1 << 16, PROT_READ, MAP_SHARED, fd, 0))
            #expect(address != MAP_FAILED)
            defer { munmap(address, 1 << 16) }
            #expect(mprotect(address, 1 << 16, PROT_READ | PROT_WRITE) == -1, "\(name)")
            #expect(errno == EACCES, "\(name): errno \(errno)")
        }
    }

    @Test func writeAndTruncateAreRefused() throws {
        let writer = try Self.sealedSegment()
        for (name, descriptor) in try Self.descriptors(of: writer) {
            let fd = descriptor.rawValue
            var byte: UInt8 = 0xFF
            #expect(pwrite(fd, &byte, 1, 4096) == -1, "\(name)")
            #expect(errno == (name == "O_RDWR" ? EPERM : EBADF), "\(name): errno \(errno)")
            #expect(ftruncate(fd, 0) == -1, "\(name)")
            #expect(errno == (name == "O_RDWR" ? EPERM : EINVAL), "\(name): errno \(errno)")
            #expect(ftruncate(fd, 1 << 20) == -1, "\(name)")
        }
        #expect(try Memfd.size(of: writer.current.fileDescriptor) == 1 << 16)
    }

    @Test func theWriterKeepsWritingAfterSealing() throws {
        let writer = try Self.sealedSegment()
        try Array("after".utf8).withUnsafeBytes { _ = try writer.append($0) }
        let reader = try openReader(writer.current)
        #expect(try reader.allChunks().map { String(decoding: $0.bytes, as: UTF8.self) } == ["before", "after"])
    }

    @Test func readersRefuseUnsealedOrForeignDescriptors() throws {
        // A memfd with the right contents but no seals.
        let writer = try Self.sealedSegment()
        let copy = try Memfd.create(name: "unsealed-copy", size: 1 << 16)
        defer { try? copy.close() }
        let source = try openReader(writer.current)
        _ = source.mapping.base.withMemoryRebound(to: UInt8.self, capacity: 1 << 16) { bytes in
            pwrite(copy.rawValue, bytes, 1 << 16, 0)
        }
        let unsealed = #expect(throws: SegmentError.self) { _ = try SegmentReader(fd: copy) }
        #expect(unsealed?.kind == .notSealed)
        #expect(unsealed?.message.contains("F_SEAL_FUTURE_WRITE") == true)
        // Accepted only when explicitly told to.
        #expect(try SegmentReader(fd: copy, options: .init(requireSeals: false)).allChunks().count == 1)
        // Sealed but without F_SEAL_FUTURE_WRITE.
        try Memfd.addSeals(shmbus_F_SEAL_SHRINK | shmbus_F_SEAL_GROW | shmbus_F_SEAL_SEAL, to: copy)
        let partial = #expect(throws: SegmentError.self) { _ = try SegmentReader(fd: copy) }
        #expect(partial?.message.contains("F_SEAL_FUTURE_WRITE") == true)
        // A regular file is not a memfd.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-not-memfd-\(getpid())").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: 1 << 16))
        defer { unlink(path) }
        let file = try UnixFileDescriptor.open(path, O_RDONLY)
        let foreign = #expect(throws: SegmentError.self) { _ = try SegmentReader(fd: file) }
        #expect(foreign?.kind == .notMemfd)
    }
}
