import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// `shmbus top` when its output goes to a program: `--json` (one object per refresh,
/// the fields docs/OBSERVABILITY.md lists), plain tables, `--once`; and the live view
/// while `shmbus demo` runs, which is issue 17's "Done when".
@Suite struct TopOutputTests {
    static func object(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }

    static func channel(_ report: [String: Any], _ name: String) -> [String: Any]? {
        (report["channels"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    @Test(.timeLimit(.minutes(5))) func onceAsJSONHasEveryFieldAndRatesOverOneSecond() async throws {
        let fixture = try await RegistryFixture()
        let name = "topjson\(TestBus.uniqueSuffix())/frames"
        let publisher = try await Publisher.open(channel: name, on: .address(fixture.address))
        let feeding = Feeder(every: .milliseconds(10)) { _ = try? publisher.publish([UInt8](repeating: 7, count: 100)) }
        defer { feeding.stop() }
        let reader = try await fixture.client()
        _ = try await reader.openSegment(publisher.currentSegment)

        let (status, out, err) = try await fixture.run(["top", "--json", "--once", "--prefix", name])
        #expect(status == .exited(0), "\(err)")
        let lines = out.split(separator: "\n")
        #expect(lines.count == 1, "one refresh, one line")
        let report = try Self.object(String(try #require(lines.first)))
        #expect(report["sort"] as? String == "rate")
        #expect(report["prefix"] as? String == name)
        #expect((report["interval"] as? Double ?? 0) > 0)
        #expect((report["channelCount"] as? Int ?? 0) >= 1)
        #expect((report["segmentCount"] as? Int ?? 0) >= 1)
        #expect(report["unreadableObjects"] as? Int == 0)
        #expect((report["channels"] as? [Any])?.count == 1, "the prefix shows only this channel")
        let row = try #require(Self.channel(report, name))
        #expect((row["chunkRate"] as? Double ?? 0) > 0)
        #expect((row["byteRate"] as? Double ?? 0) > 0)
        #expect((row["publishedChunks"] as? Int ?? 0) > 0)
        // Each record: 64 header bytes and 100 payload bytes, padded to 192.
        #expect(row["publishedBytes"] as? Int == (row["publishedChunks"] as? Int ?? 0) * 192)
        #expect(row["segments"] as? Int == 1)
        #expect(row["generation"] as? Int == 1)
        #expect(row["collections"] as? Int == 0)
        #expect(row["readers"] as? Int == 1, "the reader handed a descriptor")
        #expect(row["publisherUser"] as? Int == Int(getuid()))
        #expect(row["publisherProcess"] as? Int == Int(getpid()))
        #expect(row["owner"] as? String == publisher.connection.uniqueName)
        #expect(row["timeToLive"] as? Int == 0)
        #expect((row["capacity"] as? Int ?? 0) > 0)
        #expect((row["committedBytes"] as? Int ?? 0) > 0)
        #expect((row["liveBytes"] as? Int ?? 0) > 0)
        reader.connection.close()
        await publisher.close()
    }

    @Test(.timeLimit(.minutes(5))) func jsonLinesFollowTheCountsAndPlainTablesRepeat() async throws {
        let fixture = try await RegistryFixture()
        let prefix = "toplines\(TestBus.uniqueSuffix())"
        let busy = try await Publisher.open(channel: "\(prefix)/b", on: .address(fixture.address))
        let quiet = try await Publisher.open(channel: "\(prefix)/a", on: .address(fixture.address))
        try quiet.publish([UInt8](repeating: 1, count: 10))
        let feeding = Feeder(every: .milliseconds(10)) { _ = try? busy.publish([UInt8](repeating: 7, count: 100)) }
        defer { feeding.stop() }

        let top = try ChildProcess(fixture.shmbus, ["top", "--json", "--sort", "name", "--prefix", prefix, "--bus", fixture.address], stdout: .pipe, stderr: .inherit)
        defer { top.signal(SIGKILL) }
        var reports: [[String: Any]] = []
        for try await line in top.lines() {
            reports.append(try Self.object(line))
            if reports.count == 3 { break }
        }
        #expect(reports.count == 3)
        let times = reports.compactMap { $0["time"] as? Double }
        #expect(times.count == 3 && times == times.sorted() && Set(times).count == 3, "\(times)")
        let counts = reports.compactMap { Self.channel($0, "\(prefix)/b")?["publishedChunks"] as? Int }
        #expect(counts.count == 3 && counts == counts.sorted() && counts[2] > counts[0], "\(counts)")
        for report in reports {
            let names = (report["channels"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(names == ["\(prefix)/a", "\(prefix)/b"], "sorted by name")
        }

        // Not a terminal, no --json: a plain table per refresh.
        let plain = try ChildProcess(fixture.shmbus, ["top", "--prefix", prefix, "--bus", fixture.address], stdout: .pipe, stderr: .inherit)
        defer { plain.signal(SIGKILL) }
        var headers = 0
        var rows: [String] = []
        for try await line in plain.lines() {
            if line.hasPrefix("CHANNEL") { headers += 1 }
            if line.hasPrefix(prefix) { rows.append(line) }
            if headers == 2 { break }
        }
        #expect(headers == 2)
        #expect(rows.first?.hasPrefix("\(prefix)/b ") == true, "sorted by chunks/s: \(rows)")
        #expect(!rows.joined().contains("\u{1B}"), "no escape sequences in plain output")
        await busy.close()
        await quiet.close()
    }

    /// The demo's own processes (its daemon, its publisher, its subscriber), as `make
    /// demo` starts them, watched by top on a terminal: its channel appears, its count
    /// moves, its subscriber shows as a reader.
    @Test(.timeLimit(.minutes(5))) func showsTheDemosChannelMoving() async throws {
        let fixture = try await RegistryFixture(startDaemon: false)
        // 7,200 frames at the demo's 120 per second: about a minute of frames to watch.
        // (With 20 s, a loaded CI run saw top's first reading only near the end, and the
        // demo had stopped before its count could move.)
        let demo = try ChildProcess(
            fixture.shmbus, ["demo", "--bus", fixture.address, "--frames", "7200", "--frame-size", "64KiB", "--blob-size", "1MiB"],
            stdout: .pipe, stderr: .inherit)
        async let demoOutput = demo.collectOutput()
        let session = try await TmuxSession(script: TopTerminalTests.script(fixture, "--prefix demo/"))
        let channel = "demo/\(demo.pid)"
        var screen = try await session.eventually("the demo's channel with a rate and its reader") {
            (TopTerminalTests.cell($0, channel: channel, column: "CHUNKS/S").flatMap(Double.init) ?? 0) > 0
                && TopTerminalTests.cell($0, channel: channel, column: "READERS") == "1"
        }
        let first = try #require(TopTerminalTests.cell(screen, channel: channel, column: "PUBLISHED").flatMap(UInt64.init))
        screen = try await session.eventually("the demo's count moving") {
            (TopTerminalTests.cell($0, channel: channel, column: "PUBLISHED").flatMap(UInt64.init) ?? 0) > first
        }
        try await session.send("q")
        try await session.eventually("top ended") { $0.contains("top-exit=0") }
        let output = String(decoding: try await demoOutput.stdout, as: UTF8.self)
        #expect(await demo.exit() == .exited(0), "\(output)")
        #expect(output.contains("7200/7200"), "\(output)")
    }
}
