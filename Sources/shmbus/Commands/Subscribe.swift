import ArgumentParser
import CShmBusLinux
import DBus
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

    @Option(help: "Stop after this many chunks (1 or more; without it, run until interrupted).")
    var count: Int?

    @Option(
        name: .customLong("wait-for-channel"),
        help: ArgumentHelp(
            "Seconds to wait for a channel not in the registry yet, saying so on stderr; then exit 66 (0: fail at once).",
            valueName: "seconds"))
    var waitForChannel: Double = 10

    @Option(help: "Save each chunk's payload as DIR/<sequence>.bin.")
    var outputDir: String?

    @Option(
        help: ArgumentHelp(
            "How to wait: bus, futex, poll, or spin[:BUDGET] (spin on the segment up to BUDGET, e.g. 50us, 2ms; default 50us, at most 100ms; then sleep as futex does).",
            valueName: "mode"))
    var wait = "bus"

    @Flag(help: "One JSON object per line.")
    var json = false

    @Flag(help: "Read every byte of each payload and print its checksum (docs/FORMAT.md's function, seed 0).")
    var checksum = false

    @Flag(help: "Exit (0) once the channel's publisher has left the bus and everything it committed was printed, instead of waiting for its next publisher.")
    var untilPublisherLeaves = false

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
        var owner: String?
        /// The chunk's attributes; absent when it has none.
        var attributes: [String: JSONValue]?
    }

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be 1 or more (got \(count))") }
        guard waitForChannel.isFinite, waitForChannel >= 0 else {
            throw ValidationError("--wait-for-channel takes a number of seconds, 0 or more (got \(waitForChannel))")
        }
        _ = try startPosition()
        _ = try waitStrategy()
    }

    private func startPosition() throws -> ChannelCursor.Start {
        switch from {
        case "oldest": return .oldest
        case "now": return .now
        default:
            guard let sequence = UInt64(from) else { throw ValidationError("--from takes oldest, now or a sequence number") }
            return .sequence(sequence)
        }
    }

    private func waitStrategy() throws -> Subscriber.Wait {
        switch wait {
        case "bus": return .bus
        case "futex": return .futex
        case "poll": return .poll(.milliseconds(1))
        case "spin": return .spin(Subscriber.Wait.defaultSpinBudget)
        case let spin where spin.hasPrefix("spin:"):
            let text = String(spin.dropFirst("spin:".count))
            guard let budget = SpinBudget(argument: text) else {
                throw ValidationError("--wait spin:BUDGET takes a duration such as 50us, 500ns or 2ms, up to 100ms (got '\(text)')")
            }
            return .spin(budget.duration)
        default: throw ValidationError("--wait takes bus, futex, poll or spin[:BUDGET]")
        }
    }

    func run() async throws {
        let options = Subscriber.Options(
            start: try startPosition(), wait: try waitStrategy(), waitForChannel: .seconds(waitForChannel),
            endWhenPublisherLeaves: untilPublisherLeaves)
        try await reportingFailures {
            // Before subscribing: a directory that cannot be made is the caller's to fix
            // now, not after the first chunk arrived.
            if let outputDir { try makeDirectories(outputDir) }
            let connection = try await DBusConnection.connect(to: bus.resolved())
            defer { connection.close() }
            try await announceWaiting(on: connection)
            let subscriber = try await Subscriber.open(channel: channel, connection: connection, options: options)
            defer { subscriber.cancel() }
            var received = 0
            for try await event in subscriber {
                switch event {
                case .chunk(let chunk):
                    let sum = checksum ? chunk.withUnsafeBytes { String(shmbus_mix64($0.baseAddress, $0.count, 0), radix: 16) } : nil
                    let latency = Double(Int64(bitPattern: RealtimeClock.now() &- chunk.timestamp)) / 1000
                    if let outputDir {
                        let file = try OutputFile(creating: "\(outputDir)/\(chunk.sequence).bin")
                        try chunk.withUnsafeBytes { bytes throws(FileFailure) in try file.write(bytes) }
                        try file.finish()
                    }
                    if json {
                        try JSONOutput.print(
                            Line(
                                event: "chunk", sequence: chunk.sequence, key: chunk.key, length: chunk.count, latencyMicroseconds: latency,
                                checksum: sum, attributes: chunk.attributes.isEmpty ? nil : chunk.attributes.json))
                    } else {
                        let attributes = chunk.attributes.isEmpty ? "" : " " + chunk.attributes.commandLineText
                        try Output.write("sequence \(chunk.sequence) key \(chunk.key.isEmpty ? "-" : chunk.key) length \(chunk.count) latency \(String(format: "%.1f", latency)) µs\(sum.map { " checksum \($0)" } ?? "")\(attributes)")
                    }
                    received += 1
                case .gap(let missed, let after):
                    if json {
                        try JSONOutput.print(Line(event: "gap", missed: missed, after: after))
                    } else {
                        try Output.write("gap: missed \(missed) chunks after sequence \(after)")
                    }
                case .publisherLeft(let owner):
                    if json {
                        try JSONOutput.print(Line(event: "publisher-left", owner: owner))
                    } else {
                        try Output.write("publisher \(owner) left the bus")
                    }
                }
                if let count, received >= count { break }
            }
        }
    }

    /// Says on stderr that the command is about to wait for a channel that is not
    /// there, so that a silent pause is not taken for a hang. The subscriber looks again
    /// itself; a channel that appears in between only makes the line unneeded.
    private func announceWaiting(on connection: DBusConnection) async throws {
        guard waitForChannel > 0 else { return }
        let registry = RegistryClient(connection: connection)
        let present = try await registry.channel(channel).map { !$0.currentSegment.isEmpty } ?? false
        if !present {
            let seconds = waitForChannel == waitForChannel.rounded() ? String(Int(waitForChannel)) : String(waitForChannel)
            FileHandle.standardErrorWrite("shmbus: waiting up to \(seconds) s for channel '\(channel)' to appear\n")
        }
    }
}
