import ArgumentParser
import Foundation
import Glibc
import SharedSegments
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

    @OptionGroup var bus: BusOption

    func run() async throws {
        try await reportingFailures {
            let registry = try await RegistryClient.connect(to: bus.resolved())
            let found = try await registry.lookup(channel: channel, key: key)
            let (fd, _) = try await registry.openSegment(found.segment)
            let reader: SegmentReader
            do throws(SegmentError) {
                reader = try SegmentReader(fd: fd)
            } catch {
                throw ShmBusError(.badSegment, error.message)
            }
            // Read it ourselves (validated), rather than trusting offsets from the bus.
            let chunk: Chunk?
            do throws(SegmentError) {
                chunk = try reader.latest(key: key)
            } catch {
                throw ShmBusError(.badSegment, error.message)
            }
            guard let chunk else { throw ShmBusError(.notFound, "the chunk with key '\(key)' is gone (replaced or expired)") }
            // A write failure is the output's fault, not the bus's: 73, naming the target.
            let target = if let output { try OutputFile(creating: output) } else { OutputFile.standardOutput() }
            // Straight from the shared mapping to the output: no copy in between.
            try chunk.withUnsafeBytes { bytes throws(FileFailure) in try target.write(bytes) }
            try target.finish()
        }
    }
}
