import Foundation
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// Owned names (docs/SECURITY.md): a channel is its Unix user's for as long as it holds
/// any segment, live or persistent; `system/` names are root's and the registry's user's.
/// Tried by real users on a bus configured like the system bus with the shipped policy.
@Suite(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot))
struct OwnershipTests {
    let a = AccessUsers.a, b = AccessUsers.b
    var ua: UInt32 { AccessUsers.uid(a) }
    var ub: UInt32 { AccessUsers.uid(b) }

    /// A's persistent channel `a/persist` whose publisher has left: the bus and the
    /// channel's one segment.
    func departedChannel() async throws -> (SystemBusRegistry, String) {
        let bus = try await SystemBusRegistry()
        let published = try await bus.publish(as: a, channel: "a/persist", "A's bytes")
        try #require(published.status == .exited(0), "\(published)")
        let segments = try await bus.segments(of: "a/persist", as: a)
        try #require(segments.count == 1)
        return (bus, segments[0])
    }

    /// A's data are as A left them: one segment, and A's bytes through `shmbus cat`.
    func expectIntact(_ bus: SystemBusRegistry, _ segment: String) async throws {
        #expect(try await bus.segments(of: "a/persist", as: a) == [segment])
        let own = try await bus.cat(as: a, channel: "a/persist")
        #expect(own.status == .exited(0) && own.stdout == "A's bytes", "\(own)")
        let lookup = try await bus.call(as: a, .registry("Lookup", "ss", "a/persist", "k"))[0]
        #expect((lookup.value as? [Any])?.first as? String == segment, "\(lookup)")
    }

    @Test func anotherUserCannotRegisterOnADepartedUsersChannel() async throws {
        let (bus, segment) = try await departedChannel()
        let crafted = try craftedSegment(channel: "a/persist")
        let raw = try await bus.call(as: b, registerCall("a/persist", crafted, options: ["persistent": true]), inheriting: [crafted.fileDescriptor])[0]
        #expect(
            raw.isError("AccessDenied", saying: "channel 'a/persist' belongs to user \(ua) while it holds any segment; user \(ub) may not register on it"),
            "\(raw)")
        // The command line reads the history it would continue first, and is refused there.
        let cli = try await bus.publish(as: b, channel: "a/persist", "B's bytes")
        #expect(cli.status == .exited(77) && cli.stderr.contains("channel 'a/persist' of user \(ua) is readable by its own user and root only"), "\(cli)")
        try await expectIntact(bus, segment)
    }

    @Test func anotherUserCannotContinueADepartedUsersLineage() async throws {
        let (bus, segment) = try await departedChannel()
        let next = try craftedSegment(channel: "a/persist", generation: 2)
        let raw = try await bus.call(
            as: b, registerCall("a/persist", next, options: ["persistent": true, "replaces": segment]), inheriting: [next.fileDescriptor])[0]
        #expect(
            raw.isError("AccessDenied", saying: "channel 'a/persist' belongs to user \(ua) while it holds any segment; user \(ub) may not register on it"),
            "\(raw)")
        try await expectIntact(bus, segment)
    }

    @Test func anotherUserCannotUnregisterADepartedUsersSegment() async throws {
        let (bus, segment) = try await departedChannel()
        let raw = try await bus.call(as: b, .registry("UnregisterSegment", "s", segment))[0]
        #expect(
            raw.isError(
                "AccessDenied", saying: "channel 'a/persist' belongs to user \(ua) while it holds any segment; user \(ub) may not unregister a segment of it"),
            "\(raw)")
        try await expectIntact(bus, segment)
    }

    @Test func anotherUserCannotUnregisterOrReplaceALiveSegment() async throws {
        let bus = try await SystemBusRegistry()
        let (_, segment) = try await bus.hold(as: a, channel: "a/live", "A's live bytes")
        let next = try craftedSegment(channel: "a/live", generation: 2)
        let replies = try await bus.call(
            as: b, .registry("UnregisterSegment", "s", segment), registerCall("a/live", next, options: ["replaces": segment]),
            inheriting: [next.fileDescriptor])
        #expect(replies[0].isError("AccessDenied", saying: "segment \(segment) belongs to"), "\(replies[0])")
        #expect(replies[1].isError("AccessDenied", saying: "channel 'a/live' belongs to user \(ua)"), "\(replies[1])")
        let own = try await bus.cat(as: a, channel: "a/live")
        #expect(own.status == .exited(0) && own.stdout == "A's live bytes", "\(own)")
    }

    @Test func onlyRootAndTheRegistrysUserHaveSystemNames() async throws {
        let bus = try await SystemBusRegistry()
        for user in [a, b] {
            let squat = try await bus.publish(as: user, channel: "system/clock", "\(user)'s time")
            #expect(
                squat.status == .exited(77)
                    && squat.stderr.contains(
                        "channel names under 'system/' are reserved to root and the registry's user (0); user \(AccessUsers.uid(user)) may not register on 'system/clock'"),
                "\(squat)")
        }
        let file = try bus.file("root's time")
        let root = try await BuiltProducts.run(bus.shmbus, ["publish", "--channel", "system/clock", "--key", "k", "--persistent", "--bus", bus.address, file])
        #expect(root.status == .exited(0), "\(root)")
        let read = try await bus.cat(as: a, channel: "system/clock")
        // Root's channel is root's: readable by others only with a grant.
        #expect(read.status == .exited(77), "\(read)")
    }

    @Test func aNameAnotherUserHoldsIsRefusedUntilItsSegmentsAreGone() async throws {
        let bus = try await SystemBusRegistry()
        let (holder, _) = try await bus.hold(as: b, channel: "shared/name", "B's bytes")
        let refused = try await bus.publish(as: a, channel: "shared/name", "A's bytes")
        #expect(
            refused.status == .exited(77)
                && refused.stderr.contains("channel 'shared/name' belongs to user \(ub) while it holds any segment; user \(ua) may not register on it"),
            "\(refused)")

        holder.signal(SIGTERM)
        #expect(await holder.exit() == .exited(0))
        let taken = try await bus.publish(as: a, channel: "shared/name", "A's bytes")
        #expect(taken.status == .exited(0), "\(taken)")
        let read = try await bus.cat(as: a, channel: "shared/name")
        #expect(read.stdout == "A's bytes", "\(read)")
    }

    @Test func persistentSegmentsHoldANameAfterTheirPublisherLeft() async throws {
        let bus = try await SystemBusRegistry()
        #expect(try await bus.publish(as: b, channel: "shared/kept", "B's bytes").status == .exited(0))
        let refused = try await bus.publish(as: a, channel: "shared/kept", "A's bytes")
        // A's publisher looks for a history to continue first, and may not read B's.
        #expect(refused.status == .exited(77) && refused.stderr.contains("channel 'shared/kept' of user \(ub)"), "\(refused)")
        let crafted = try craftedSegment(channel: "shared/kept")
        let raw = try await bus.call(as: a, registerCall("shared/kept", crafted), inheriting: [crafted.fileDescriptor])[0]
        #expect(
            raw.isError("AccessDenied", saying: "channel 'shared/kept' belongs to user \(ub) while it holds any segment; user \(ua) may not register on it"),
            "\(raw)")

        // B takes its leftover away: the name is free.
        let segment = try #require(try await bus.segments(of: "shared/kept", as: b).first)
        let removed = try await bus.call(as: b, .registry("UnregisterSegment", "s", segment))[0]
        #expect(removed.succeeded, "\(removed)")
        let taken = try await bus.publish(as: a, channel: "shared/kept", "A's bytes")
        #expect(taken.status == .exited(0), "\(taken)")
        #expect(try await bus.cat(as: a, channel: "shared/kept").stdout == "A's bytes")
    }
}
