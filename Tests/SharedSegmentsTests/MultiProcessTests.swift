import DBus
import Foundation
import Glibc
import ShmBusSystem
import TestSupport
import Testing

/// One writer process, several reader processes: real processes sharing real memfds.
@Suite struct MultiProcessTests {
    @Test func readersInOtherProcessesReceiveEveryChunkAcrossCollections() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-mp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let worker = BuiltProducts.path("shmbus-segment-worker")
        let chunks = 100_000
        let seed = UInt64.random(in: 1...UInt64.max)
        // 1 MiB segments: about 110 MB of chunks, so dozens of collections during the run.
        let writer = try ChildProcess(
            worker, ["write", dir.path, "\(chunks)", "\(1 << 20)", "\(seed)"], stdin: .pipe, stdout: .pipe, stderr: .inherit)
        defer { writer.signal(SIGKILL) }
        // Readers start while the writer is already writing.
        let readers = try (0..<3).map { _ in
            try ChildProcess(worker, ["read", dir.path, "\(writer.pid)", "\(chunks)"], stdout: .pipe, stderr: .pipe)
        }
        var reports: [String] = []
        for reader in readers {
            let (stdout, stderr) = try await reader.collectOutput()
            let output = String(decoding: stdout, as: UTF8.self)
            let errors = String(decoding: stderr, as: UTF8.self)
            let status = await reader.exit()
            #expect(status == .exited(0), "reader: \(errors)")
            reports.append(output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        writer.closeStandardInput()
        let written = String(decoding: try await writer.collectOutput().stdout, as: UTF8.self)
        #expect(await writer.exit() == .exited(0))
        print("writer: \(written.trimmingCharacters(in: .whitespacesAndNewlines)); readers: \(reports) (seed \(seed))")
        let rotations = written.split(separator: " ").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        #expect(rotations >= 10, "garbage collection happened during the run")
        for report in reports {
            // "read D skipped S segments N": every chunk delivered or skipped as obsolete.
            let fields = report.split(separator: " ")
            #expect(fields.count == 6)
            if fields.count == 6, let delivered = Int(fields[1]), let skipped = Int(fields[3]), let segments = Int(fields[5]) {
                #expect(delivered + skipped == chunks)
                #expect(segments > 1, "the reader followed successors")
            }
        }
    }
}

@Suite struct ExampleTests {
    @Test func theSegmentPipeExampleVerifiesAcrossProcesses() async throws {
        let (status, stdout, stderr) = try await BuiltProducts.run(BuiltProducts.path("segment-pipe-example"), ["300"])
        #expect(status == .exited(0), "\(stderr)")
        #expect(stdout.contains("child: verified 300 chunks"))
        #expect(stdout.contains("read in place: true"))
    }
}
