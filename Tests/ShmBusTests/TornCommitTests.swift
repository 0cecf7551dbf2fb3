import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// A writer SIGKILLed between the two header stores of a commit (the committed end,
/// then the last sequence) leaves a record that readers read, one sequence past what
/// the header says. The channel's next publisher must continue after that record, not
/// after the header: otherwise it publishes the torn record's sequence again, and
/// readers skip one of the two chunks (issue 12, "Channels that last").
@Suite struct TornCommitTests {
    /// A chunk of a plan: its key ("" for none) and payload length.
    struct Planned: Sendable {
        var key: String
        var length: Int
    }

    /// What the killed publisher commits (sequences 1…8). The last chunk, the torn one,
    /// replaces a's chunk 4, and the kill comes before that commit marks chunk 4
    /// obsolete: both stay live in the segment, and only the sequences say which is newer.
    static let killed: [Planned] = [
        .init(key: "a", length: 64), .init(key: "b", length: 80), .init(key: "", length: 96), .init(key: "a", length: 200),
        .init(key: "c", length: 120), .init(key: "", length: 64), .init(key: "b", length: 72), .init(key: "a", length: 333),
    ]
    /// What the next publisher publishes (sequences 9…13): b twice, a new key, chunks
    /// without a key. a and c stay as the killed publisher left them. The last has no
    /// key, so it is never obsolete: a reader that has it has read everything.
    static let next: [Planned] = [
        .init(key: "b", length: 90), .init(key: "", length: 100), .init(key: "d", length: 48), .init(key: "b", length: 130),
        .init(key: "", length: 70),
    ]

    /// The payload of chunk `sequence` at `length` bytes, as the publishers write it.
    static func payload(_ sequence: UInt64, _ length: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        bytes.withUnsafeMutableBytes { TestPayload.fill($0, sequence: sequence) }
        return bytes
    }

    @Test(.timeLimit(.minutes(5))) func aPublisherKilledBetweenItsTwoHeaderStoresIsContinuedAfterItsLastRecord() async throws {
        let fixture = try await RegistryFixture()
        let client = try await fixture.client()
        let channel = "torn"
        let plan = Self.killed + Self.next
        let peer = try ChildProcess(
            BuiltProducts.path("shmbus-test-peer"), ["torn", fixture.address, channel] + Self.killed.map { "\($0.key)=\($0.length)" },
            stdin: .pipe, stdout: .pipe, stderr: .inherit)
        defer { peer.closeStandardInput() }
        let line = try await peer.readLine() ?? ""
        let words = line.split(separator: " ").map(String.init)
        try #require(words.count == 3 && words[0] == "torn", "the peer did not get there: '\(line)'")
        let torn = try #require(UInt64(words[2]))
        #expect(torn == UInt64(Self.killed.count))

        // The torn state is real, in the sealed segment the registry holds: the header
        // is one sequence behind the last record a reader finds below the committed end.
        let segment = try SegmentReader(fd: try await client.openSegment(words[1]).fd)
        let state = try segment.liveState()
        let records = try segment.allChunks()
        #expect(state.lastSequence == torn - 1)
        #expect(records.last?.sequence == torn)
        #expect(records.last?.recordEnd == state.committedEnd)
        #expect(records.first { $0.sequence == 4 }?.isObsolete == false, "the torn commit never replaced a's chunk 4")

        // A subscriber from the oldest chunk, started before the hand-over, reads the
        // torn chunk, then learns that the publisher left.
        let early = try await Subscriber.open(channel: channel, on: .address(fixture.address), options: .init(start: .oldest))
        var events = early.makeAsyncIterator()
        var earlyAudit = PlanAudit(plan: plan)
        while earlyAudit.highest < torn, let event = try await events.next() { earlyAudit.record(event) }
        peer.signal(SIGKILL)
        #expect(await peer.exit() == .signaled(SIGKILL))
        var left = false
        while !left, let event = try await events.next() {
            if case .publisherLeft = event { left = true } else { earlyAudit.record(event) }
        }
        #expect(left)

        // The next publisher (same user) continues after the torn record: none of the
        // killed publisher's sequences again, none left out.
        var options = Publisher.Options()
        options.capacity = 1 << 20
        let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address), options: options)
        var sequences: [UInt64] = []
        for planned in Self.next {
            let sequence = publisher.lastSequence + 1
            let chunk = try publisher.publish(key: planned.key, length: planned.length) { TestPayload.fill($0, sequence: sequence) }
            sequences.append(chunk.sequence)
        }
        await publisher.flush()
        #expect(sequences.first == torn + 1, "the first new sequence follows the torn record's, not the header's")
        #expect(sequences == Array(torn + 1...UInt64(plan.count)))
        let continued = try SegmentReader(fd: try await client.openSegment(publisher.currentSegment).fd)
        #expect(continued.header.baseSequence == torn, "the new generation starts after the torn record")
        #expect(continued.header.generation == segment.header.generation + 1)

        // Read up to the new publisher's last chunk (up to what it really published,
        // so that a wrong continuation ends the reading too, with problems to show).
        let last = publisher.lastSequence
        while earlyAudit.highest < last, let event = try await events.next() { earlyAudit.record(event) }
        early.cancel()
        #expect(earlyAudit.problems.isEmpty, "subscriber started before the hand-over: \(earlyAudit.problems)")
        #expect(earlyAudit.gaps.isEmpty, "everything was in its segments: \(earlyAudit.gaps)")
        #expect(earlyAudit.next == UInt64(plan.count) + 1)

        // A subscriber from the oldest chunk, started after the hand-over, reads the new
        // publisher's first segment: the chunks carried over (the torn one among them)
        // and the new ones. What it does not get was replaced by its key: a gap for
        // what was not carried over, passed over for what is obsolete.
        let late = try await Subscriber.open(channel: channel, on: .address(fixture.address), options: .init(start: .oldest))
        var lateAudit = PlanAudit(plan: plan)
        for try await event in late {
            lateAudit.record(event)
            if lateAudit.highest >= last { break }
        }
        late.cancel()
        #expect(lateAudit.problems.isEmpty, "subscriber started after the hand-over: \(lateAudit.problems)")
        #expect(lateAudit.delivered == (1...UInt64(plan.count)).filter { !PlanAudit(plan: plan).isReplaced($0) })
        #expect(lateAudit.delivered.contains(torn))

        // The newest chunk of each key, byte for byte, from Lookup and from `shmbus cat`:
        // a's is the torn chunk (a chunk 4 copied as the newest would be the old value).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("torn-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for key in ["a", "b", "c", "d"] {
            let index = try #require(plan.lastIndex { $0.key == key })
            let newest = UInt64(index + 1)
            let bytes = Self.payload(newest, plan[index].length)
            do {
                let chunk = try await client.latest(channel: channel, key: key)
                #expect(chunk.sequence == newest, "Lookup of \(key)")
                #expect(chunk.data == Data(bytes), "Lookup of \(key)")
            } catch {
                Issue.record("Lookup of \(key): \(error)")
            }
            let copy = directory.appendingPathComponent(key)
            let (status, _, err) = try await fixture.run(["cat", "--channel", channel, "--key", key, "-o", copy.path])
            #expect(status == .exited(0), "shmbus cat --key \(key): \(err)")
            #expect((try? Data(contentsOf: copy)) == Data(bytes), "shmbus cat --key \(key)")
        }
        await publisher.close()
    }
}

/// A subscriber's events checked against the plan the publishers followed (sequence s
/// is `plan[s - 1]`): each chunk once, in sequence order, with its planned key, length
/// and payload; every sequence not delivered, whether passed over or reported in a
/// gap, is one whose key a later chunk replaced, never the newest of a key nor one
/// without a key.
struct PlanAudit {
    let plan: [TornCommitTests.Planned]
    /// The first sequence not yet delivered or accounted for.
    var next: UInt64 = 1
    /// The highest sequence seen in a chunk or a gap.
    var highest: UInt64 = 0
    var delivered: [UInt64] = []
    var gaps: [(after: UInt64, missed: UInt64)] = []
    var problems: [String] = []

    /// Whether a later chunk of the plan has the key of chunk `sequence`.
    func isReplaced(_ sequence: UInt64) -> Bool {
        guard sequence >= 1, sequence <= UInt64(plan.count) else { return false }
        let key = plan[Int(sequence) - 1].key
        return !key.isEmpty && plan[Int(sequence)...].contains { $0.key == key }
    }

    mutating func record(_ event: Subscriber.Event) {
        switch event {
        case .chunk(let chunk):
            let sequence = chunk.sequence
            highest = max(highest, sequence)
            guard sequence >= next, sequence <= UInt64(plan.count) else {
                problems.append("chunk \(sequence) (key '\(chunk.key)') where \(next) or later was next")
                return
            }
            passOver(next..<sequence, as: "passed over")
            let planned = plan[Int(sequence) - 1]
            if chunk.key != planned.key || chunk.count != planned.length || !TestPayload.check(chunk) {
                problems.append("chunk \(sequence) is key '\(chunk.key)', \(chunk.count) bytes: not what was published with it")
            }
            delivered.append(sequence)
            next = sequence + 1
        case .gap(let missed, let after):
            highest = max(highest, after + missed)
            guard after + 1 >= next else {
                problems.append("gap of \(missed) after \(after) where \(next) or later was next")
                return
            }
            gaps.append((after, missed))
            passOver(next..<(after + 1), as: "passed over")
            passOver((after + 1)..<(after + 1 + missed), as: "reported missing")
            next = after + missed + 1
        case .publisherLeft:
            break
        }
    }

    private mutating func passOver(_ sequences: Range<UInt64>, as what: String) {
        for sequence in sequences where !isReplaced(sequence) {
            problems.append("chunk \(sequence) \(what), but nothing replaced it")
        }
    }
}
