import Glibc
import Foundation
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// `shmbus publish FILE` reads a large file straight into the segment (with its memory
/// faulted in ahead by the prefaulter) and every byte arrives.
@Suite struct PublishFileTests {
    @Test(.timeLimit(.minutes(5))) func aLargeFileArrivesByteForByte() async throws {
        let fixture = try await RegistryFixture()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-publish-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // 40 MiB and a few bytes: more than the prefaulter's step, not a whole page.
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: (40 << 20) + 12_345)
        bytes.withUnsafeMutableBytes { buffer in
            let words = buffer.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = generator.next() }
        }
        let input = directory.appendingPathComponent("in.bin")
        let output = directory.appendingPathComponent("out.bin")
        try Data(bytes).write(to: input)
        let (published, out, err) = try await fixture.run(["publish", "--channel", "big/file", "--key", "k", "--persistent", input.path])
        try #require(published == .exited(0), "\(err)")
        #expect(out.contains("length \(bytes.count) "), "\(out)")
        let (read, _, readErr) = try await fixture.run(["cat", "--channel", "big/file", "--key", "k", "-o", output.path])
        try #require(read == .exited(0), "\(readErr)")
        let copy = try Data(contentsOf: output)
        #expect(copy.count == bytes.count)
        #expect(copy == Data(bytes))
    }

    /// `shmbus publish --lines`: every line a chunk, in order, byte for byte: an empty
    /// line, a line longer than one read (1 MiB), and a last line without its newline.
    @Test(.timeLimit(.minutes(5))) func everyLineOfTheInputIsAChunk() async throws {
        let fixture = try await RegistryFixture()
        var lines: [String] = (0..<100_000).map { "line \($0) " + String(repeating: "x", count: $0 % 97) }
        lines[500] = ""
        lines[70_000] = String(repeating: "long", count: 400_000)  // 1.6 MB: spans reads
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-lines-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: input) }
        try Data(lines.joined(separator: "\n").utf8).write(to: input)  // no newline at the end
        let (status, out, err) = try await fixture.run(["publish", "--channel", "logs/lines", "--lines", "--persistent", "--json", input.path])
        try #require(status == .exited(0), "\(err)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(summary["lines"] as? Int == lines.count)
        let last = try #require(summary["lastSequence"] as? Int)
        let subscriber = try await Subscriber.open(channel: "logs/lines", on: .address(fixture.address), options: .init(start: .oldest))
        var read: [String] = []
        for try await events in subscriber.batches {
            for case .chunk(let chunk) in events { read.append(String(decoding: chunk.withUnsafeBytes { Array($0) }, as: UTF8.self)) }
            if read.count >= lines.count || (subscriber.lastSequence ?? 0) >= UInt64(last) { break }
        }
        subscriber.cancel()
        #expect(read.count == lines.count)
        #expect(read == lines, "every line, in order, without its newline")
    }

    /// `shmbus publish --lines --reuse-memory` into segments of three lines each, fed
    /// through a FIFO three lines at a time while a subscriber reads: the generations
    /// go round four segments' memory, and the subscriber gets every line intact,
    /// each chunk leased.
    @Test(.timeLimit(.minutes(5))) func linesPublishedIntoReusedMemoryArriveIntact() async throws {
        let fixture = try await RegistryFixture()
        let lines = (0..<240).map { "line \($0) " + String(repeating: String(UnicodeScalar(UInt8(97 + $0 % 26))), count: 4000) }
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-reuse-\(UInt32.random(in: 0...UInt32.max))").path
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let publishing = Task {
            try await fixture.run(["publish", "--channel", "logs/reused", "--lines", "--reuse-memory", "--capacity", "16384", "--json", fifo])
        }
        // The command opens the FIFO first (which waits for a writer), then the channel.
        let opening = Task { try await onOwnThread { FileHandle(forWritingAtPath: fifo) } }
        let client = try await fixture.client()
        while try await client.channel("logs/reused") == nil { try await Task.sleep(for: .milliseconds(20)) }
        let subscriber = try await Subscriber.open(
            channel: "logs/reused", on: .address(fixture.address), options: .init(start: .oldest, endWhenPublisherLeaves: true))
        let input = try #require(try await opening.value)
        var read: [String] = []
        var leased = true
        var iterator = subscriber.makeAsyncIterator()
        for step in stride(from: 0, to: lines.count, by: 3) {
            try input.write(contentsOf: Data(lines[step..<step + 3].map { $0 + "\n" }.joined().utf8))
            while read.count < step + 3, let event = try await iterator.next() {
                guard case .chunk(let chunk) = event else { continue }
                read.append(String(decoding: chunk.withUnsafeBytes { Array($0) }, as: UTF8.self))
                leased = leased && chunk.isLeased
            }
        }
        try input.close()
        let (status, out, err) = try await publishing.value
        try #require(status == .exited(0), "\(err)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(summary["lines"] as? Int == lines.count)
        #expect((summary["reusedGenerations"] as? Int ?? 0) > 40, "\(summary)")
        #expect(read == lines, "every line, intact and in order")
        #expect(leased, "chunks of a channel that reuses memory are leased")
        subscriber.cancel()
    }

    /// A line longer than the largest chunk is refused while it is still being read
    /// (input without newlines is not buffered without end), and the lines before it
    /// stay published.
    @Test(.timeLimit(.minutes(5))) func aLineLongerThanTheLargestChunkIsRefusedAndTheLinesBeforeItStay() async throws {
        let fixture = try await RegistryFixture()
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-long-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: input) }
        try Data(("one\ntwo\n" + String(repeating: "x", count: 200_000) + "\nthree\n").utf8).write(to: input)
        let (status, _, err) = try await fixture.run(
            ["publish", "--channel", "logs/long", "--lines", "--persistent", "--capacity", "65536", input.path])
        #expect(status != .exited(0))
        #expect(err.contains("does not fit a segment of 65536 bytes"), "\(err)")
        // No newline in 3 MiB: refused after the first read, not buffered to the end.
        let endless = input.appendingPathExtension("endless")
        defer { try? FileManager.default.removeItem(at: endless) }
        try Data(repeating: UInt8(ascii: "y"), count: 3 << 20).write(to: endless)
        let (again, _, againErr) = try await fixture.run(
            ["publish", "--channel", "logs/endless", "--lines", "--capacity", "65536", endless.path])
        #expect(again != .exited(0))
        #expect(againErr.contains("a line is longer than the largest chunk (61376 bytes)"), "\(againErr)")
        let subscriber = try await Subscriber.open(channel: "logs/long", on: .address(fixture.address), options: .init(start: .oldest))
        var read: [String] = []
        for try await events in subscriber.batches {
            for case .chunk(let chunk) in events { read.append(String(decoding: chunk.withUnsafeBytes { Array($0) }, as: UTF8.self)) }
            if read.count >= 2 { break }
        }
        subscriber.cancel()
        #expect(read == ["one", "two"])
    }
}
