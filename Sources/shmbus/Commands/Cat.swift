import ArgumentParser
import Foundation
import Glibc
import ShmBus

struct Cat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the newest chunk with a key to stdout or a file, byte for byte.")

    @Option(help: "The channel.")
    var channel: String

    @Option(help: "The key.")
    var key: String

    @Option(name: .shortAndLong, help: "Write to this file instead of stdout.")
    var output: String?

    @Flag(help: "Print what the chunk is (segment, sequence, length, times, attributes) instead of its bytes.")
    var info = false

    @Flag(help: "With --info: one JSON object.")
    var json = false

    @OptionGroup var bus: BusOption

    func run() async throws {
        try await reportingFailures {
            let registry = try await RegistryClient.connect(to: bus.resolved())
            // Read from the segment itself (validated), not from offsets on the bus.
            let chunk = try await registry.latest(channel: channel, key: key)
            if info { return try printInfo(chunk) }
            // A write failure is the output's fault, not the bus's: 73, naming the target.
            let target = if let output { try OutputFile(creating: output) } else { OutputFile.standardOutput() }
            // Straight from the shared mapping to the output: no copy in between.
            try chunk.withUnsafeBytes { bytes throws(FileFailure) in try target.write(bytes) }
            try target.finish()
        }
    }

    func validate() throws {
        if json && !info { throw ValidationError("--json goes with --info") }
        if info && output != nil { throw ValidationError("--info prints to stdout; --output is for the bytes") }
    }

    /// What `--info` prints, as `--json` shows it.
    struct Info: Encodable {
        var segment: String
        var generation: UInt64
        var sequence: UInt64
        var key: String
        var length: Int
        /// The payload's byte offset in the segment.
        var offset: UInt64
        /// CLOCK_REALTIME nanoseconds.
        var timestamp: UInt64
        var expiry: UInt64
        var attributes: [String: JSONValue]
    }

    private func printInfo(_ chunk: Chunk) throws {
        if json {
            return try JSONOutput.print(
                Info(
                    segment: chunk.segment.name, generation: chunk.generation, sequence: chunk.sequence, key: chunk.key,
                    length: chunk.count, offset: chunk.payloadOffset, timestamp: chunk.timestamp, expiry: chunk.expiry,
                    attributes: chunk.attributes.json))
        }
        var table = TextTable("FIELD", "VALUE")
        table.add("segment", chunk.segment.name)
        table.add("generation", String(chunk.generation))
        table.add("sequence", String(chunk.sequence))
        table.add("length", "\(ByteCount.human(UInt64(chunk.count))) (\(chunk.count) bytes)")
        table.add("offset", String(chunk.payloadOffset))
        table.add("timestamp", Stat.describe("Created", .uint64(chunk.timestamp / 1000)))
        table.add("expiry", Stat.describe("Expires", .uint64(chunk.expiry / 1000)))
        for (name, value) in chunk.attributes.entries {
            table.add(name, Self.describe(name, value))
        }
        try Output.write(table.rendered.split(separator: "\n").dropFirst().joined(separator: "\n"))
    }

    /// An attribute for people: a pixel format with its DRM name.
    static func describe(_ name: String, _ value: ChunkAttributes.Value) -> String {
        if name == "pixel-format", case .string(let fourcc) = value {
            return "\"\(fourcc)\"" + (ChunkAttributes.PixelFormat(fourcc: fourcc).drmName.map { " (\($0))" } ?? "")
        }
        return value.description
    }
}
