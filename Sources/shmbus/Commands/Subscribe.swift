import ArgumentParser
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBus

struct Subscribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print (or save) the chunks of a channel as they are published.")

    @Option(help: "The channel.")
    var channel: String

    @Option(help: "Where to start: oldest, now, or a sequence number.")
    var from = "now"

    @Option(help: "Stop after this many chunks.")
    var count: Int?

    @Option(help: "Save each chunk's payload as DIR/<sequence>.bin.")
    var outputDir: String?

    @Option(help: "How to wait: bus, futex, or poll.")
    var wait = "bus"

    @Flag(help: "One JSON object per line.")
    var json = false

    @Flag(help: "Read every byte of each payload and print its checksum (docs/FORMAT.md's function, seed 0).")
    var checksum = false

    @OptionGroup var bus: BusOption

    struct Line: Encodable {
        var event: String
        var sequence: UInt64?
        var key: String?
        var length: Int?
        var latencyMicroseconds: Double?
        var missed: UInt64?
        var after: UInt64?
        var checksum: String?
    }

    func run() async throws {
        let start: ChannelCursor.Start
        switch from {
        case "oldest": start = .oldest
        case "now": start = .now
        default:
            guard let sequence = UInt64(from) else { throw ValidationError("--from takes oldest, now or a sequence number") }
            start = .sequence(sequence)
        }
        let strategy: Subscriber.Wait
        switch wait {
        case "bus": strategy = .bus
        case "futex": strategy = .futex
        case "poll": strategy = .poll(.milliseconds(1))
        default: throw ValidationError("--wait takes bus, futex or poll")
        }
        try await reportingFailures {
            if let outputDir { try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true) }
            let subscriber = try await Subscriber.open(
                channel: channel, on: bus.resolved(), options: .init(start: start, wait: strategy))
            var received = 0
            for try await event in subscriber {
                switch event {
                case .chunk(let chunk):
                    let sum = checksum ? chunk.withUnsafeBytes { String(shmbus_mix64($0.baseAddress, $0.count, 0), radix: 16) } : nil
                    let latency = Double(Int64(bitPattern: RealtimeClock.now() &- chunk.timestamp)) / 1000
                    if let outputDir {
                        try chunk.data.write(to: URL(fileURLWithPath: outputDir).appendingPathComponent("\(chunk.sequence).bin"))
                    }
                    if json {
                        try JSONOutput.print(Line(event: "chunk", sequence: chunk.sequence, key: chunk.key, length: chunk.count, latencyMicroseconds: latency, checksum: sum))
                    } else {
                        Output.line("sequence \(chunk.sequence) key \(chunk.key.isEmpty ? "-" : chunk.key) length \(chunk.count) latency \(String(format: "%.1f", latency)) µs\(sum.map { " checksum \($0)" } ?? "")")
                    }
                    received += 1
                case .gap(let missed, let after):
                    if json {
                        try JSONOutput.print(Line(event: "gap", missed: missed, after: after))
                    } else {
                        Output.line("gap: missed \(missed) chunks after sequence \(after)")
                    }
                }
                if let count, received >= count { break }
            }
            subscriber.cancel()
        }
    }
}
