import ArgumentParser
import DBus
import Foundation
import Glibc
import ShmBus

struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of the registry's channels: rates, fill, collections, readers, publishers.",
        discussion: """
            Refreshes every second. On a terminal: keys q quit, r sort by chunks/s, b by bytes/s, \
            n by name, / type a channel-name prefix (Enter sets it, Escape drops it). When stdout is \
            not a terminal (or TERM=dumb) it prints one table per refresh; --json prints one JSON \
            object per refresh instead (docs/OBSERVABILITY.md lists the fields). Rates are over \
            the time between two polls, so the first table comes after one second.
            """)

    @OptionGroup var bus: BusOption

    @Option(help: "Order: rate (chunks/s), bytes (bytes/s), or name.")
    var sort: TopSort = .rate

    @Option(help: "Show only channels whose names begin with this.")
    var prefix = ""

    @Flag(help: "One JSON object per refresh, one per line.")
    var json = false

    @Flag(help: "One refresh (rates over one second), then exit.")
    var once = false

    static let refresh = Duration.seconds(1)

    func run() async throws {
        try await reportingFailures {
            let connection = try await ShmBusError.rethrowing { try await DBusConnection.connect(to: bus.resolved()) }
            defer { connection.close() }
            let sampler = TopSampler(connection: connection)
            let view = TopView(sort: sort, prefix: prefix)
            if once {
                _ = try await sampler.sample()
                try await Task.sleep(for: Self.refresh)
                try emit(TopReport(try await sampler.sample(), view: view))
            } else if !json, Self.drawsOnTerminal {
                try await TopLoop(sampler: sampler, view: view).run()
            } else {
                try await printLines(sampler, view)
            }
        }
    }

    /// The live view needs a terminal on stdout that speaks ANSI (see ``TopTerminal``).
    static var drawsOnTerminal: Bool {
        guard isatty(STDOUT_FILENO) == 1 else { return false }
        let term = ProcessEnvironment.value("TERM") ?? ""
        return !term.isEmpty && term != "dumb"
    }

    /// Plain tables or JSON lines, one per refresh, until killed. A registry that is
    /// not there (yet, or any more) is said once on stderr and polled again.
    private func printLines(_ sampler: TopSampler, _ view: TopView) async throws {
        var next = ContinuousClock.now
        var lastFailure: String?
        while true {
            do {
                let snapshot = try await sampler.sample()
                lastFailure = nil
                if snapshot.interval != nil { try emit(TopReport(snapshot, view: view)) }
            } catch let error as ShmBusError {
                if error.message != lastFailure { FileHandle.standardErrorWrite(CommandFailure.message(for: error) + "\n") }
                lastFailure = error.message
            }
            next += Self.refresh
            try await Task.sleep(until: next)
        }
    }

    private func emit(_ report: TopReport) throws {
        if json {
            try JSONOutput.print(report)
        } else {
            let time = Date(timeIntervalSince1970: report.time).formatted(.iso8601)
            try Output.write(([time + " · " + report.summary] + report.table).joined(separator: "\n") + "\n")
        }
    }
}
