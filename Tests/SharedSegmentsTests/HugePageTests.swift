import Foundation
import SharedSegments
import Testing

/// Segments ask for transparent huge pages (or not) as told: the kernel records the
/// advice on the mapping as the `hg` flag in /proc/self/smaps, whatever the system's
/// `shmem_enabled` makes of it. Kernels built without THP refuse the advice (EINVAL,
/// which the writer ignores) and have no /sys/kernel/mm/transparent_hugepage.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: "/sys/kernel/mm/transparent_hugepage"), "a kernel with transparent huge pages"))
struct HugePageTests {
    /// The `VmFlags` of each of this process's mappings of memfds named
    /// `shmbus:<channel>` (every generation of a channel has that name).
    static func vmFlags(ofSegmentsFor channel: String) throws -> [[Substring]] {
        // Read to the end: /proc files report a size of 0, which a sized read trusts.
        guard let file = FileHandle(forReadingAtPath: "/proc/self/smaps") else { throw SegmentError(.invalidArgument, "no /proc/self/smaps") }
        defer { try? file.close() }
        let smaps = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        var inMapping = false
        var found: [[Substring]] = []
        for line in smaps.split(separator: "\n") {
            if line.first?.isHexDigit == true, line.contains("-") {
                // A mapping's first line: "start-end perms offset dev inode path".
                inMapping = line.hasSuffix("/memfd:shmbus:\(channel) (deleted)")
            } else if inMapping, line.hasPrefix("VmFlags:") {
                found.append(line.dropFirst("VmFlags:".count).split(separator: " "))
            }
        }
        return found
    }

    @Test(arguments: [true, false])
    func theWritersMappingCarriesTheAdviceAsAsked(hugePages: Bool) throws {
        let channel = "test/huge-\(hugePages)-\(UInt32.random(in: 0...UInt32.max))"
        let writer = try SegmentWriter(channel: channel, capacity: 4 << 20, generation: 1, baseSequence: 0, hugePages: hugePages)
        let mappings = try Self.vmFlags(ofSegmentsFor: channel)
        #expect(mappings.count == 1, "\(mappings)")
        for flags in mappings {
            #expect(flags.contains("sh"), "a shared mapping: \(flags)")
            #expect(flags.contains("hg") == hugePages, "\(flags)")
        }
        withExtendedLifetime(writer) {}
    }

    @Test func aChannelWriterAsksForEveryGeneration() throws {
        let channel = "test/huge-gc-\(UInt32.random(in: 0...UInt32.max))"
        let writer = try ChannelWriter(channel: channel, capacity: 64 << 10, policy: .whenFull, hugePages: true)
        let payload = [UInt8](repeating: 1, count: 4000)
        for _ in 0..<40 {
            try payload.withUnsafeBytes { _ = try writer.append($0) }
        }
        #expect(writer.current.header.generation > 1, "the writer collected at least once")
        let mappings = try Self.vmFlags(ofSegmentsFor: channel)
        #expect(!mappings.isEmpty)
        #expect(mappings.allSatisfy { $0.contains("hg") }, "\(mappings)")
    }
}
