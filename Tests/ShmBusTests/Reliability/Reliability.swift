import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// The reliability suite's knobs and measurements.
///
/// The normal test suite runs each scenario in its quick form. `make reliability`
/// sets `SHMBUS_RELIABILITY=full`, which runs the counts docs/RELIABILITY.md names
/// (50 publisher kills, 1,000,000 fuzz inputs, …). Every scenario prints one
/// `reliability:` line with its figures; the make target collects them.
enum Reliability {
    static var isFull: Bool { ProcessInfo.processInfo.environment["SHMBUS_RELIABILITY"] == "full" }

    /// `quick` in the normal suite, `full` under `make reliability`.
    static func count(quick: Int, full: Int) -> Int { isFull ? full : quick }

    static func report(_ scenario: String, _ figures: KeyValuePairs<String, Any>) {
        report(scenario, figures.map { ($0.key, $0.value) })
    }

    /// The same for figures assembled piece by piece.
    static func report(_ scenario: String, _ figures: [(String, Any)]) {
        let text = figures.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        print("reliability: \(scenario) [\(isFull ? "full" : "quick")] \(text)")
    }

    /// Open descriptors of a process, counted in /proc/PID/fd.
    static func openDescriptors(of pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
    static func memoryKiB(_ field: String, of pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    /// What is in /dev/shm (ShmBus uses memfds, so a run must leave it as it was).
    static func devShm() -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; returns the
    /// time it took, or nil.
    static func waitUntil(_ timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Duration? {
        let start = ContinuousClock.now
        while true {
            if try await condition() { return ContinuousClock.now - start }
            guard ContinuousClock.now - start < timeout else { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Checks a latency the contract limits (docs/RELIABILITY.md: a dead owner's
    /// segments leave the registry within 1 s; a publisher registers again within 2 s
    /// of a restarted registry appearing), measured by the caller where the signals
    /// arrive.
    ///
    /// The limit itself is asserted in the full run (`make reliability`, on a machine
    /// doing nothing else), whose figures are the contract's measurement. In `make
    /// test` the whole suite runs in parallel on two shared cores, perhaps under TSan,
    /// and any process may wait longer than a second for a CPU: there a figure over the
    /// limit is printed, and only a bound of 30 s is asserted, which a registry or
    /// publisher that does not react at all still fails.
    static func expectLatency(
        _ elapsed: Duration, within limit: Duration, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let bound = isFull ? limit : max(limit, .seconds(30))
        if elapsed >= limit {
            print("\(what) after \(elapsed), over the contract's \(limit)\(isFull ? "" : " (asserted in the full run only)")")
        }
        #expect(elapsed < bound, "\(what) after \(elapsed); limit \(bound)", sourceLocation: sourceLocation)
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.1fms", Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15)
    }

    static func percentile(_ values: [Duration], _ p: Double) -> Duration {
        guard !values.isEmpty else { return .zero }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
    }
}

/// What a subscriber saw, checked as it arrives: whole chunks with valid checksums, and
/// sequences that, with the gaps it reported, run contiguously from the first one.
struct StreamAudit: Sendable {
    var delivered = 0
    var missed: UInt64 = 0
    var gaps: [(after: UInt64, missed: UInt64)] = []
    /// The next sequence expected; nil until the first event when reading from the
    /// oldest live chunk (whatever collection left).
    var next: UInt64?
    var first: UInt64?
    /// Chunks whose checksum failed, duplicates, or sequences out of order.
    var problems: [String] = []

    init(from first: UInt64? = nil) { next = first }

    mutating func record(_ event: Subscriber.Event) {
        switch event {
        case .chunk(let chunk): self.chunk(chunk.sequence, valid: TestPayload.check(chunk))
        case .gap(let count, let after): gap(after: after, missed: count)
        case .publisherLeft: break
        }
    }

    mutating func chunk(_ sequence: UInt64, valid: Bool) {
        if let next, sequence != next { problems.append("sequence \(sequence), expected \(next)") }
        if !valid { problems.append("bad payload at \(sequence)") }
        if first == nil { first = sequence }
        delivered += 1
        next = sequence + 1
    }

    mutating func gap(after: UInt64, missed count: UInt64) {
        if let next, after + 1 != next { problems.append("gap after \(after), expected after \(next - 1)") }
        if first == nil { first = after + 1 }
        gaps.append((after, count))
        missed += count
        next = after + count + 1
    }

    /// The last sequence accounted for (delivered or reported missing).
    var last: UInt64 { (next ?? 1) - 1 }
}
