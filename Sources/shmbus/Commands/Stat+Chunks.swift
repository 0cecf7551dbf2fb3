import SharedSegments
import ShmBus

/// `shmbus stat`'s look into the segment itself: the newest live chunk of each key and
/// what it says it holds (its attributes), read from the segment (validated), not
/// from the bus.
extension Stat {
    /// One key's newest live chunk.
    struct KeyedChunk: Encodable {
        var key: String
        var sequence: UInt64
        var length: Int
        var attributes: [String: JSONValue]?
    }

    /// How many keys stat lists, newest first, and how many records it reads at most:
    /// enough to see what a segment holds without reading millions of small ones.
    static let listedKeys = 16
    static let scannedRecords = 100_000

    /// The newest live chunk of each key (up to ``listedKeys``), and whether records
    /// were left unread.
    static func newestChunks(of segment: String, registry: RegistryClient) async throws(ShmBusError) -> ([Chunk], truncated: Bool) {
        let (fd, _) = try await registry.openSegment(segment)
        defer { try? fd.close() }
        do {
            // Without a lease: stat lists keys and sizes of validated records and hands
            // no bytes on, so a record rewritten meanwhile only misreports one line.
            let reader = try SegmentReader(fd: fd, options: .headersOnly)
            let limit = try reader.liveState().committedEnd
            var newest: [String: Chunk] = [:]
            var offset = UInt64(SegmentLayout.headerSize)
            var read = 0
            while offset < limit, read < scannedRecords {
                let chunk = try reader.chunk(at: offset, limit: limit)
                newest[chunk.key] = chunk
                offset = chunk.recordEnd
                read += 1
            }
            let now = RealtimeClock.now()
            let live = newest.values.filter { $0.isLive(at: now) }.sorted { $0.sequence > $1.sequence }
            return (Array(live.prefix(listedKeys)), offset < limit || live.count > listedKeys)
        } catch {
            throw ShmBusError(error, context: "segment \(segment)")
        }
    }

    static func keyedChunk(_ chunk: Chunk) -> KeyedChunk {
        KeyedChunk(
            key: chunk.key, sequence: chunk.sequence, length: chunk.count,
            attributes: chunk.attributes.isEmpty ? nil : chunk.attributes.json)
    }

    /// A row's text: `sequence 300, 1.2 MiB, width=640 height=480 …`.
    static func describe(_ chunk: Chunk) -> String {
        let attributes = chunk.attributes.entries.map { "\($0.name)=\(Cat.describe($0.name, $0.value))" }.joined(separator: " ")
        return "sequence \(chunk.sequence), \(ByteCount.human(UInt64(chunk.count)))" + (attributes.isEmpty ? "" : ", " + attributes)
    }
}
