import Foundation
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// Fair quotas (docs/SECURITY.md): segments and bytes count per Unix user across its
/// connections, persistent segments included after their publisher left, so one user's
/// flood makes only that user hear `QuotaExceeded`. Small limits (daemon flags) keep
/// the floods short; the rules are the same at the defaults.
@Suite(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot))
struct QuotaTests {
    let a = AccessUsers.a, b = AccessUsers.b
    var ub: UInt32 { AccessUsers.uid(b) }

    /// 100 connections of B, one segment each, against a per-user limit of 64 in a
    /// registry of 200: B's 65th and later are refused, the registry keeps room, and A
    /// publishes and reads meanwhile.
    @Test func oneUsersConnectionsFillOnlyThatUsersQuota() async throws {
        let bus = try await SystemBusRegistry(daemonArguments: ["--max-segments-per-user", "64", "--max-segments", "200"])
        let connections = 100
        let segments = try (0..<connections).map { try craftedSegment(channel: "b/flood/\($0)") }
        let calls = segments.enumerated().map { index, segment in registerCall("b/flood/\(index)", segment, connection: index) }
        let (replies, release) = try await bus.users.callAndHold(
            as: b, on: bus.address, calls, connections: connections, inheriting: segments.map(\.fileDescriptor))
        #expect(replies.prefix(64).allSatisfy { $0.succeeded }, "\(replies.prefix(64).filter { !$0.succeeded })")
        let refused = replies.dropFirst(64)
        let limit = "user \(ub) holds 64 segments across its connections, persistent ones included (limit 64 per user)"
        #expect(refused.count == 36 && refused.allSatisfy { $0.isError("QuotaExceeded", saying: limit) }, "\(refused.first.map(String.init(describing:)) ?? "")")

        // While B holds its 64: A publishes and reads.
        let published = try await bus.publish(as: a, channel: "a/during", "A during B's flood")
        #expect(published.status == .exited(0), "\(published)")
        let read = try await bus.cat(as: a, channel: "a/during")
        #expect(read.stdout == "A during B's flood", "\(read)")
        #expect(try await bus.root.segments().count == 65)
        await release()
        withExtendedLifetime(segments) {}
    }

    /// B's persistent segments still count for B after each of its publishers left: B's
    /// next connection is refused, A's is not.
    @Test func persistentSegmentsOfADepartedUserStillCountForIt() async throws {
        let bus = try await SystemBusRegistry(daemonArguments: ["--max-segments-per-user", "4"])
        for index in 0..<4 {
            let kept = try await bus.publish(as: b, channel: "b/kept/\(index)", "B's \(index)")
            try #require(kept.status == .exited(0), "\(kept)")
        }
        let limit = "user \(ub) holds 4 segments across its connections, persistent ones included (limit 4 per user)"
        let cli = try await bus.publish(as: b, channel: "b/kept/4", "one more")
        #expect(cli.status == .exited(75) && cli.stderr.contains(limit), "\(cli)")
        let crafted = try craftedSegment(channel: "b/kept/5")
        let raw = try await bus.call(as: b, registerCall("b/kept/5", crafted), inheriting: [crafted.fileDescriptor])[0]
        #expect(raw.isError("QuotaExceeded", saying: limit), "\(raw)")

        let other = try await bus.publish(as: a, channel: "a/mine", "A's")
        #expect(other.status == .exited(0), "\(other)")
        // B makes room by taking one of its own leftovers away.
        let segment = try #require(try await bus.segments(of: "b/kept/0", as: b).first)
        #expect(try await bus.call(as: b, .registry("UnregisterSegment", "s", segment))[0].succeeded)
        let again = try await bus.publish(as: b, channel: "b/kept/4", "one more")
        #expect(again.status == .exited(0), "\(again)")
    }

    /// The bound on persistent bytes of users whose publishers left: 64 KiB here. Live
    /// segments do not count against it.
    @Test func persistentBytesOfAUserAreBounded() async throws {
        let bus = try await SystemBusRegistry(daemonArguments: ["--max-persistent-bytes-per-user", "64KiB"])
        func publish(_ channel: String, persistent: Bool = true) async throws -> Outcome {
            var arguments = ["publish", "--channel", channel, "--key", "k", "--capacity", "32KiB"]
            if persistent { arguments.append("--persistent") }
            return try await bus.shmbus(as: b, arguments + [try bus.file("B's data")])
        }
        for index in 0..<2 {
            let kept = try await publish("b/big/\(index)")
            try #require(kept.status == .exited(0), "\(kept)")
        }
        let over = try await publish("b/big/2")
        #expect(
            over.status == .exited(75)
                && over.stderr.contains(
                    "user \(ub) holds 65536 bytes of persistent segments; 32768 more would pass the limit of 65536 (unregister some, or give them a ttl)"),
            "\(over)")
        let (live, _) = try await bus.hold(as: b, channel: "b/live", "live data", options: ["--capacity", "32KiB"])
        #expect(!live.hasExited)
        let other = try await bus.publish(as: a, channel: "a/big", "A's")
        #expect(other.status == .exited(0), "\(other)")
    }
}
