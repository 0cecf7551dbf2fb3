import Foundation
import ShmBusSystem
import TestSupport
import Testing

/// `shmbus publish FILE` reads a large file straight into the segment (with its memory
/// faulted in ahead by the prefaulter) and every byte arrives.
@Suite struct PublishFileTests {
    @Test(.timeLimit(.minutes(2))) func aLargeFileArrivesByteForByte() async throws {
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
}
