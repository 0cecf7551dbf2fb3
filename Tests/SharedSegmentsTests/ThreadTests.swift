import Foundation
import SharedSegments
import ShmBusSystem
import Locking
import Testing

/// Writer and readers as threads of one process (run under --sanitize=thread).
@Suite struct ThreadTests {
    /// Segments by ID, filled by the writer thread, read by reader threads.
    final class SharedDirectory: Sendable {
        let segments = Lock<[SegmentID: UnixFileDescriptor]>([:])
    }

    @Test func concurrentReadersSeeEveryChunkInOrder() async throws {
        let directory = SharedDirectory()
        let total: UInt64 = 20_000
        let firstSegment = Lock<UnixFileDescriptor?>(nil)
        // The writer lives on its own thread; the first segment is announced before
        // readers start.
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do {
                let writer = try ChannelWriter(channel: "test/threads", capacity: 128 * 1024)
                var keep = [writer.current]
                directory.segments.withLock { $0[writer.current.id] = writer.current.fileDescriptor }
                firstSegment.withLock { $0 = writer.current.fileDescriptor }
                ready.signal()
                for i in 1...total {
                    let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 16 + Int(i % 200))
                    let appended = try bytes.withUnsafeBytes { try writer.append($0, key: i % 10 == 0 ? "k\(i % 30)" : "") }
                    if let rotation = appended.rotation {
                        keep.append(rotation.new)
                        directory.segments.withLock { $0[rotation.new.id] = rotation.new.fileDescriptor }
                        writer.retire(rotation)
                    }
                }
                finished.signal()
                release.wait()
                withExtendedLifetime(keep) {}
            } catch {
                Issue.record("writer: \(error)")
                ready.signal()
                finished.signal()
            }
        }
        ready.wait()
        let first = try #require(firstSegment.withLock { $0 })
        let results = try await withThrowingTaskGroup(of: (UInt64, UInt64).self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await Self.readOnThread(first: first, directory: directory, total: total)
                }
            }
            var out: [(UInt64, UInt64)] = []
            for try await result in group { out.append(result) }
            return out
        }
        finished.wait()
        release.signal()
        for (delivered, skipped) in results {
            #expect(delivered + skipped == total)
        }
    }

    static func readOnThread(first: UnixFileDescriptor, directory: SharedDirectory, total: UInt64) async throws -> (UInt64, UInt64) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let resolve = { (id: SegmentID) throws(SegmentError) -> SegmentReader in
                        while true {
                            if let fd = directory.segments.withLock({ $0[id] }) {
                                return try SegmentReader(fd: try Memfd.reopenReadOnly(fd))
                            }
                            usleep(100)
                        }
                    }
                    let cursor = try ChannelCursor(
                        segment: try SegmentReader(fd: try Memfd.reopenReadOnly(first)), start: .oldest,
                        resolver: resolve)
                    var delivered: UInt64 = 0
                    var previous: UInt64 = 0
                    while (cursor.lastSequence ?? 0) < total {
                        guard let event = try cursor.next() else {
                            cursor.waitForData(.poll(.microseconds(50)), timeout: .seconds(10))
                            continue
                        }
                        guard case .chunk(let chunk) = event else { throw SegmentError(.badRecord, "unexpected \(event)") }
                        guard chunk.sequence > previous, chunk.bytes.allSatisfy({ $0 == UInt8(truncatingIfNeeded: chunk.sequence) })
                        else { throw SegmentError(.badRecord, "chunk \(chunk.sequence) is wrong") }
                        previous = chunk.sequence
                        delivered += 1
                    }
                    continuation.resume(returning: (delivered, cursor.skippedChunks))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
