import ArgumentParser
import DBus
import Foundation
import Glibc
import ShmBus

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure ShmBus against D-Bus byte arrays, memcpy and bare bus signals, side by side.",
        discussion: """
            Starts its own private dbus-daemon and registry; publishers and subscribers are separate \
            processes. Prints the machine, then every figure with the ratios that matter. Build with \
            -c release for meaningful numbers.
            """)

    @Flag(help: "Print one JSON object with every figure.")
    var json = false

    @Option(help: "Blob sizes, comma separated (default 4KiB,1MiB,16MiB,64MiB,256MiB,1GiB).")
    var sizes: String?

    @Flag(help: "A few seconds in all: small sizes, few repetitions (for tests; checks correctness, not speed).")
    var quick = false

    @Option(help: "Blob-call sizes, comma separated (default 4KiB,1MiB,64MiB,1GiB).")
    var callSizes: String?

    @Option(help: "Run only these parts, comma separated: blobs, latency, throughput, views, requests, blob-calls, bridge (bridge only when named: it starts a three-node nats-server cluster).")
    var only: String?

    /// The parts of a run, in the order they run and print.
    enum Part: String, CaseIterable {
        case blobs, latency, throughput, views, requests
        case blobCalls = "blob-calls"
        case bridge
    }

    func validate() throws {
        _ = try parts()
        _ = try parseSizes()
        _ = try parseCallSizes()
    }

    /// The parts `--only` names (all of them without it); an unknown name is an error,
    /// not a part silently skipped.
    func parts() throws -> Set<Part> {
        guard let only else { return Set(Part.allCases).subtracting([.bridge]) }
        let names = Part.allCases.map(\.rawValue).joined(separator: ", ")
        let parts = try Set(
            only.split(separator: ",").map { name in
                guard let part = Part(rawValue: String(name)) else {
                    throw ValidationError("--only: '\(name)' is not one of \(names)")
                }
                return part
            })
        guard !parts.isEmpty else { throw ValidationError("--only: name at least one of \(names)") }
        return parts
    }

    func run() async throws {
        try await reportingFailures {
            let blobSizes = try parseSizes()
            let parts = try parts()
            var results = BenchResults(machine: await MachineInfo.current(), quick: quick)
            let run = try await BenchRun(shmbus: InstallService.currentExecutable())
            defer { run.stop() }
            if parts.contains(.blobs) {
                progress("blob transfer")
                for size in blobSizes { results.blobs.append(try await run.blob(size: size, repetitions: repetitions(for: size))) }
            }
            if parts.contains(.latency) {
                progress("notification latency")
                results.latency = try await run.latency(count: quick ? 100 : 1000, rate: quick ? 500 : 200, rounds: quick ? 1 : 5)
            }
            if parts.contains(.throughput) {
                progress("small-chunk throughput")
                results.throughput = [
                    try await run.flood(subscribers: 1, seconds: quick ? 0.5 : 3, rounds: quick ? 1 : 3),
                    try await run.flood(subscribers: 4, seconds: quick ? 0.5 : 3, rounds: quick ? 1 : 3),
                    try await run.flood(subscribers: 1, seconds: quick ? 0.5 : 3, rounds: quick ? 1 : 3, batch: 100),
                ]
                results.throughputFloor = try run.freshMemoryFloor(chunkSize: 64, total: quick ? 16 << 20 : 256 << 20, rounds: quick ? 1 : 3)
            }
            if parts.contains(.views) {
                progress("views")
                results.views = try await run.views(bigSize: quick ? 16 << 20 : 256 << 20, repetitions: quick ? 50 : 1000)
            }
            if parts.contains(.requests) {
                progress("request/response")
                results.requests = try await run.requests(size: 4 << 10, seconds: quick ? 0.3 : 2, rounds: quick ? 1 : 3)
            }
            if parts.contains(.blobCalls) {
                progress("blob calls")
                for size in try parseCallSizes() {
                    results.blobCalls.append(try await run.blobCalls(size: Int(size), repetitions: callRepetitions(for: size)))
                }
            }
            if parts.contains(.bridge) {
                progress("bridge to NATS JetStream")
                let cluster = try await BenchCluster()
                defer { cluster.stop() }
                let sizes: [(size: Int, chunks: Int)] = quick ? [(64, 200), (1 << 20, 5)] : [(64, 5_000), (1 << 20, 100), (64 << 20, 4)]
                for (index, part) in sizes.enumerated() {
                    results.bridge.append(
                        try await run.bridge(cluster: cluster, size: part.size, chunks: part.chunks, rounds: quick ? 1 : 3, index: index))
                }
            }
            if json {
                try JSONOutput.print(results)
            } else {
                Output.line(results.table)
            }
            guard results.allCorrect else {
                throw ShmBusError(.badSegment, "some transfers were lost or corrupted; see the table")
            }
        }
    }

    private func progress(_ step: String) {
        if !json { FileHandle.standardErrorWrite("bench: \(step)…\n") }
    }

    func parseSizes() throws -> [UInt64] {
        if let sizes {
            return try sizes.split(separator: ",").map { text in
                guard let size = ByteCount(argument: String(text)), size.bytes >= 16 else {
                    throw ValidationError("--sizes: '\(text)' is not a size of at least 16 bytes")
                }
                return size.bytes
            }
        }
        return quick ? [4 << 10, 1 << 20, 16 << 20] : [4 << 10, 1 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30]
    }

    func parseCallSizes() throws -> [UInt64] {
        guard let callSizes else { return quick ? [4 << 10, 1 << 20] : [4 << 10, 1 << 20, 64 << 20, 1 << 30] }
        return try callSizes.split(separator: ",").map { text in
            guard let size = ByteCount(argument: String(text)), size.bytes >= 1, size.bytes <= UInt64(Int.max) else {
                throw ValidationError("--call-sizes: '\(text)' is not a size of at least 1 byte")
            }
            return size.bytes
        }
    }

    func callRepetitions(for size: UInt64) -> Int {
        if quick { return 3 }
        switch size {
        case ..<(256 << 10): return 300
        case ..<(2 << 20): return 100
        case ..<(128 << 20): return 12
        default: return 4
        }
    }

    func repetitions(for size: UInt64) -> Int {
        if quick { return 3 }
        switch size {
        case ..<(2 << 20): return 200
        case ..<(32 << 20): return 40
        case ..<(128 << 20): return 15
        case ..<(512 << 20): return 7
        default: return 4
        }
    }
}
