import Foundation
import ShmBus
import TestSupport
import Testing

/// Who may read a channel (docs/SECURITY.md, "Read policy"), tried by real users on a
/// bus configured like the system bus with the shipped policy: another user is refused
/// everywhere a descriptor or a location is handed out, grants let in exactly whom they
/// name, and the owner and root read as before.
@Suite(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot))
struct ReadPolicyTests {
    let a = AccessUsers.a, b = AccessUsers.b, c = AccessUsers.c
    var ua: UInt32 { AccessUsers.uid(a) }
    var ub: UInt32 { AccessUsers.uid(b) }
    var uc: UInt32 { AccessUsers.uid(c) }

    /// The refusal of an owner-only channel to `reader`.
    func ownerOnly(_ channel: String, reader: UInt32) -> String {
        "channel '\(channel)' of user \(ua) is readable by its own user and root only; user \(reader) is not among them"
    }

    @Test func anotherUserCannotReadAPersistentChannelWhoseOwnerLeft() async throws {
        let bus = try await SystemBusRegistry()
        let published = try await bus.publish(as: a, channel: "a/persist", "A's persistent secret")
        try #require(published.status == .exited(0), "\(published)")
        let segment = try #require(try await bus.segments(of: "a/persist", as: a).first)

        let cat = try await bus.cat(as: b, channel: "a/persist")
        #expect(cat.status == .exited(77) && cat.stderr.contains(ownerOnly("a/persist", reader: ub)), "\(cat)")
        #expect(!cat.stdout.contains("secret"))
        // A key that does not exist is refused the same way: NotFound would tell which
        // keys do.
        let replies = try await bus.call(
            as: b, .registry("OpenSegment", "s", segment), .registry("Lookup", "ss", "a/persist", "k"),
            .registry("Lookup", "ss", "a/persist", "no-such-key"))
        for reply in replies {
            #expect(reply.isError("AccessDenied", saying: ownerOnly("a/persist", reader: ub)), "\(reply)")
        }

        // The owner reads its own data.
        let own = try await bus.cat(as: a, channel: "a/persist")
        #expect(own.status == .exited(0) && own.stdout == "A's persistent secret", "\(own)")
        let ownReplies = try await bus.call(as: a, .registry("OpenSegment", "s", segment), .registry("Lookup", "ss", "a/persist", "k"))
        #expect(ownReplies.allSatisfy { $0.succeeded }, "\(ownReplies)")
    }

    @Test func anotherUserCannotReadALiveChannelThroughTheRegistryOrItsPublisher() async throws {
        let bus = try await SystemBusRegistry()
        let (_, segment) = try await bus.hold(as: a, channel: "a/live", "A's live secret")
        let owner = try await bus.owner(of: "a/live")

        let cat = try await bus.cat(as: b, channel: "a/live")
        #expect(cat.status == .exited(77) && cat.stderr.contains(ownerOnly("a/live", reader: ub)), "\(cat)")
        let replies = try await bus.call(
            as: b, .registry("OpenSegment", "s", segment), .registry("Lookup", "ss", "a/live", "k"),
            .publisherOpenSegment(owner: owner, segment: segment))
        for reply in replies {
            #expect(reply.isError("AccessDenied", saying: ownerOnly("a/live", reader: ub)), "\(reply)")
        }

        let own = try await bus.cat(as: a, channel: "a/live")
        #expect(own.status == .exited(0) && own.stdout == "A's live secret", "\(own)")
        let ownReplies = try await bus.call(as: a, .registry("OpenSegment", "s", segment), .publisherOpenSegment(owner: owner, segment: segment))
        #expect(ownReplies.allSatisfy { $0.succeeded }, "\(ownReplies)")
    }

    @Test func listsShowAnotherUserNoneOfAUsersChannels() async throws {
        let bus = try await SystemBusRegistry()
        #expect(try await bus.publish(as: a, channel: "a/persist", "persistent").status == .exited(0))
        _ = try await bus.hold(as: a, channel: "a/live", "live")
        #expect(try await bus.publish(as: b, channel: "b/own", "B's").status == .exited(0))

        let replies = try await bus.call(
            as: b, .registry("ListChannels"), .registry("ListSegments", "s", ""), .registry("ListSegments", "s", "a/live"))
        let channels = try #require(replies[0].value as? [[Any]], "\(replies[0])").compactMap { $0.first as? String }
        #expect(channels == ["b/own"])
        let segments = try #require(replies[1].value as? [[Any]], "\(replies[1])").compactMap { $0.count > 1 ? $0[1] as? String : nil }
        #expect(segments == ["b/own"])
        #expect(replies[2].isError("AccessDenied", saying: ownerOnly("a/live", reader: ub)), "\(replies[2])")

        let mine = try await bus.call(as: a, .registry("ListChannels"))[0]
        let listed = try #require(mine.value as? [[Any]], "\(mine)").compactMap { $0.first as? String }
        #expect(listed == ["a/live", "a/persist"])
    }

    @Test func aUserGrantByNameLetsThatUserReadAndNoOtherUser() async throws {
        let bus = try await SystemBusRegistry()
        let published = try await bus.publish(as: a, channel: "a/for-b", "for B", readers: "user:\(b)")
        try #require(published.status == .exited(0), "\(published)")
        let segment = try #require(try await bus.root.segments(of: "a/for-b").first?.name)
        // The name was resolved by the command line; the registry holds the number.
        #expect(try await bus.root.segmentProperties(segment).readers == ["user:\(ub)"])

        let granted = try await bus.cat(as: b, channel: "a/for-b")
        #expect(granted.status == .exited(0) && granted.stdout == "for B", "\(granted)")
        let other = try await bus.cat(as: c, channel: "a/for-b")
        #expect(
            other.status == .exited(77)
                && other.stderr.contains("channel 'a/for-b' of user \(ua) is readable by its own user, root and user:\(ub); user \(uc) is not among them"),
            "\(other)")
    }

    @Test func aGroupGrantLetsItsMembersReadAndNoOneElse() async throws {
        let bus = try await SystemBusRegistry()
        let published = try await bus.publish(as: a, channel: "a/for-group", "for the group", readers: "group:\(AccessUsers.group)")
        try #require(published.status == .exited(0), "\(published)")
        let gid = try #require(getgrnam(AccessUsers.group)).pointee.gr_gid

        let member = try await bus.cat(as: b, channel: "a/for-group")
        #expect(member.status == .exited(0) && member.stdout == "for the group", "\(member)")
        let other = try await bus.cat(as: c, channel: "a/for-group")
        #expect(
            other.status == .exited(77)
                && other.stderr.contains("is readable by its own user, root and group:\(gid); user \(uc) is not among them"), "\(other)")
    }

    @Test func anyLetsEveryUserRead() async throws {
        let bus = try await SystemBusRegistry()
        let published = try await bus.publish(as: a, channel: "a/public", "for everyone", readers: "any")
        try #require(published.status == .exited(0), "\(published)")
        for reader in [b, c] {
            let read = try await bus.cat(as: reader, channel: "a/public")
            #expect(read.status == .exited(0) && read.stdout == "for everyone", "\(reader): \(read)")
        }
    }

    /// A publisher applies its grants to `Publisher1.OpenSegment` itself, for callers of
    /// other users too, whose processes it (not being root) may not look into.
    @Test func aGrantedUserOpensThroughThePublisherTooAndNoOtherUser() async throws {
        let bus = try await SystemBusRegistry()
        let (_, segment) = try await bus.hold(as: a, channel: "a/live-for-b", "live for B", readers: "user:\(b)")
        let owner = try await bus.owner(of: "a/live-for-b")

        let granted = try await bus.call(as: b, .publisherOpenSegment(owner: owner, segment: segment))[0]
        #expect(granted.succeeded && granted.value as? String == "<fd>", "\(granted)")
        let other = try await bus.call(as: c, .publisherOpenSegment(owner: owner, segment: segment))[0]
        #expect(
            other.isError("AccessDenied", saying: "channel 'a/live-for-b' of user \(ua) is readable by its own user, root and user:\(ub); user \(uc) is not among them"),
            "\(other)")
    }

    @Test func rootReadsEverything() async throws {
        let bus = try await SystemBusRegistry()
        #expect(try await bus.publish(as: a, channel: "a/persist", "A's persistent").status == .exited(0))
        let (_, segment) = try await bus.hold(as: a, channel: "a/live", "A's live")
        let owner = try await bus.owner(of: "a/live")

        // This test process is root.
        for (channel, bytes) in [("a/persist", "A's persistent"), ("a/live", "A's live")] {
            let read = try await BuiltProducts.run(bus.shmbus, ["cat", "--channel", channel, "--key", "k", "--bus", bus.address])
            #expect(read.status == .exited(0) && read.stdout == bytes, "\(read)")
        }
        let replies = try await bus.call(as: "root", .registry("ListChannels"), .publisherOpenSegment(owner: owner, segment: segment))
        let listed = try #require(replies[0].value as? [[Any]], "\(replies[0])").compactMap { $0.first as? String }
        #expect(listed == ["a/live", "a/persist"])
        #expect(replies[1].succeeded, "root through A's publisher: \(replies[1])")
    }
}
