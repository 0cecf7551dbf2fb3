import DBus
import Foundation
import Glibc
import Locking
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// Subscribers that die or stall: the publisher and the other subscribers do not
/// notice, and a stalled one reports exactly what it missed.
@Suite(.serialized) struct SubscriberFaultTests {
    /// `shmbus subscribe` as a separate process, one JSON object per event.
    static func subscriberProcess(_ fixture: RegistryFixture, channel: String) throws -> ChildProcess {
        try ChildProcess(
            fixture.shmbus, ["subscribe", "--channel", channel, "--from", "oldest", "--checksum", "--json", "--bus", fixture.address],
            stdout: .pipe, stderr: .inherit)
    }

    static func publisherPeer(_ fixture: RegistryFixture, channel: String, count: Int, size: Int, capacity: Int) throws -> ChildProcess {
        try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["publish", fixture.address, channel, "\(count)", "\(size)", "\(capacity)", "wait"],
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
    }

    /// Reads events into an audit until the sequence `last` is accounted for.
    static func audit(_ subscriber: Subscriber, until last: UInt64) -> Task<StreamAudit, any Error> {
        Task {
            var audit = StreamAudit()
            for try await event in subscriber {
                audit.record(event)
                if audit.last >= last { break }
            }
            return audit
        }
    }

    @Test(.timeLimit(.minutes(5))) func aSubscriberKilledMidReadGoesUnnoticed() async throws {
        let fixture = try await RegistryFixture()
        let count = Reliability.count(quick: 10_000, full: 50_000)
        let victims = Reliability.count(quick: 2, full: 8)
        let peer = try Self.publisherPeer(fixture, channel: "shared", count: count, size: 1024, capacity: 64 << 20)
        defer { peer.closeStandardInput() }
        let ready = try await peer.readLine() ?? ""
        try #require(ready.hasPrefix("ready"), "\(ready)")
        var survivors: [Subscriber] = []
        for _ in 0..<2 {
            survivors.append(try await Subscriber.open(channel: "shared", on: .address(fixture.address), options: .init(start: .oldest)))
        }
        let audits = survivors.map { Self.audit($0, until: UInt64(count)) }
        var processes: [(ChildProcess, AsyncThrowingStream<String, any Error>.AsyncIterator)] = []
        for _ in 0..<victims {
            let process = try Self.subscriberProcess(fixture, channel: "shared")
            processes.append((process, process.lines().makeAsyncIterator()))
        }
        _ = try peer.standardInput?.writeAll(Array("go\n".utf8))
        // Each victim dies after it has read a few chunks, at a different point.
        var linesRead: [Int] = []
        for index in processes.indices {
            var read = 0
            let wanted = 1 + Int.random(in: 0..<(count / 4))
            while read < wanted, try await processes[index].1.next() != nil { read += 1 }
            processes[index].0.signal(SIGKILL)
            linesRead.append(read)
        }
        var terminations: [ChildProcess.Termination] = []
        for (process, _) in processes { terminations.append(await process.exit()) }

        let published = try await PublishSubscribeTests.publishedLine(peer)
        var results: [StreamAudit] = []
        for audit in audits { results.append(try await audit.value) }
        for subscriber in survivors { subscriber.cancel() }
        #expect(terminations.allSatisfy { $0 == .signaled(SIGKILL) }, "\(terminations)")
        #expect(published.hasPrefix("published \(count) "), "the publisher went on: \(published)")
        for result in results {
            #expect(result.problems.isEmpty, "\(result.problems.prefix(5))")
            #expect(result.delivered == count && result.missed == 0, "delivered \(result.delivered), missed \(result.missed)")
        }
        let channel = try await fixture.client().channels().first { $0.name == "shared" }
        #expect(channel != nil, "the registry still serves the channel")
        Reliability.report(
            "subscriber-sigkill",
            [
                "chunks": count, "victims_killed": victims, "victim_lines_read": linesRead,
                "survivors_delivered": results.map(\.delivered), "survivors_missed": results.map(\.missed),
            ])
    }

    @Test(.timeLimit(.minutes(5))) func aStoppedSubscriberReportsTheExactGapAfterSIGCONT() async throws {
        let fixture = try await RegistryFixture()
        // 1 KiB chunks through 256 KiB segments: a collection every ~200 chunks.
        let count = Reliability.count(quick: 10_000, full: 40_000)
        let peer = try Self.publisherPeer(fixture, channel: "stall", count: count, size: 1024, capacity: 256 << 10)
        defer { peer.closeStandardInput() }
        let ready = try await peer.readLine() ?? ""
        try #require(ready.hasPrefix("ready"), "\(ready)")
        let watcher = try await fixture.client()
        let process = try Self.subscriberProcess(fixture, channel: "stall")
        defer { process.signal(SIGKILL) }
        var lines = process.lines().makeAsyncIterator()
        // Start publishing once the subscriber has the channel's first segment mapped (it
        // reads from its oldest chunk, so it is then sure to be overtaken while stopped:
        // started late, after the publishing, it would have had nothing to miss), and
        // stop the subscriber once it has read its first chunk. (This waited 300 ms,
        // which a process started on a loaded machine may well need.)
        let mapped = await Reliability.waitUntil(.seconds(60)) { Self.maps(process.pid, "/memfd:shmbus:stall") }
        try #require(mapped != nil, "the subscriber never mapped the channel's segment")
        _ = try peer.standardInput?.writeAll(Array("go\n".utf8))
        var audit = StreamAudit()
        try Self.record(try #require(try await lines.next()), size: 1024, in: &audit)
        process.signal(SIGSTOP)
        let published = try await PublishSubscribeTests.publishedLine(peer)
        #expect(published.hasPrefix("published \(count) "), "\(published)")
        let current = try #require(try await watcher.channels().first { $0.name == "stall" })
        // The truth to compare with: the oldest chunk still live once publishing ended.
        let (fd, _) = try await watcher.openSegment(current.currentSegment)
        let oldestLive = try #require(try SegmentReader(fd: fd).allChunks().first?.sequence)
        process.signal(SIGCONT)
        while audit.last < UInt64(count), let line = try await lines.next() {
            try Self.record(line, size: 1024, in: &audit)
        }
        process.signal(SIGTERM)
        _ = await process.exit()
        #expect(audit.problems.isEmpty, "\(audit.problems.prefix(5))")
        #expect(audit.last == UInt64(count), "every sequence up to the last accounted for")
        #expect(!audit.gaps.isEmpty, "collections dropped chunks while it was stopped")
        #expect(UInt64(audit.delivered) + audit.missed == UInt64(count) - (audit.first ?? 1) + 1)
        let resumedAt = audit.gaps.last.map { $0.after + $0.missed + 1 }
        #expect(resumedAt == oldestLive, "the gap ends exactly where the live chunks begin")
        Reliability.report(
            "subscriber-sigstop",
            [
                "chunks": count, "collections_while_stopped": current.generation, "oldest_live": oldestLive, "first_read": audit.first ?? 0,
                "gaps": audit.gaps.map { "after \($0.after) missed \($0.missed)" }, "delivered": audit.delivered,
                "missed": audit.missed,
            ])
    }

    /// Whether process `pid` maps a file whose name (in /proc/PID/maps) contains `name`,
    /// such as a segment's memfd, `/memfd:shmbus:CHANNEL`.
    static func maps(_ pid: pid_t, _ name: String) -> Bool {
        // Read, not String(contentsOfFile:): /proc files say they are empty, and it
        // returns only the start of a long one.
        guard let file = try? UnixFileDescriptor.open("/proc/\(pid)/maps", O_RDONLY), let bytes = try? file.readAll(limit: 64 << 20)
        else { return false }
        return String(decoding: bytes, as: UTF8.self).contains(name)
    }

    /// Records a line of `shmbus subscribe --checksum --json`, checking the chunk's
    /// checksum against the bytes the test peer wrote for its sequence.
    static func record(_ line: String, size: Int, in audit: inout StreamAudit) throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        let number = { (name: String) in (object[name] as? NSNumber)?.uint64Value ?? .max }
        switch object["event"] as? String {
        case "chunk":
            let sequence = number("sequence")
            let expected = String(TestPayload.wholeChecksum(sequence: sequence, size: size), radix: 16)
            audit.chunk(sequence, valid: object["checksum"] as? String == expected && number("length") == UInt64(size))
        case "gap":
            audit.gap(after: number("after"), missed: number("missed"))
        default:
            audit.problems.append("unexpected line \(line)")
        }
    }
}
