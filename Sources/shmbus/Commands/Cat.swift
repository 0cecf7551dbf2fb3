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

    @OptionGroup var bus: BusOption

    func run() async throws {
        try await reportingFailures {
            let registry = try await RegistryClient.connect(to: bus.resolved())
            // Read from the segment itself (validated), not from offsets on the bus.
            let chunk = try await registry.latest(channel: channel, key: key)
            // A write failure is the output's fault, not the bus's: 73, naming the target.
            let target = if let output { try OutputFile(creating: output) } else { OutputFile.standardOutput() }
            // Straight from the shared mapping to the output: no copy in between.
            try chunk.withUnsafeBytes { bytes throws(FileFailure) in try target.write(bytes) }
            try target.finish()
        }
    }
}
