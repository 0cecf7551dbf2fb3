import Foundation
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// Sandboxed apps on their user's own session bus (docs/SECURITY.md): a process of A in
/// a bubblewrap sandbox with a `/.flatpak-info` as Flatpak writes it is its app, not A:
/// it reads only what grants its app ID or what it published itself, and touches none
/// of A's channels. The bus and the registry run as A, as in a desktop session.
@Suite(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot), .enabled(if: Sandbox.available, Sandbox.needsBwrap))
struct SandboxTests {
    let a = AccessUsers.a
    var ua: UInt32 { AccessUsers.uid(a) }
    static let app = "org.example.App"
    static let other = "org.example.Other"

    /// How the registry refuses app `app` a channel with `readers`.
    func unreadable(_ channel: String, by app: String, readers: String = "its own user and root only") -> String {
        "channel '\(channel)' is not readable by sandboxed app \(app) of user \(ua): a sandboxed app reads only channels that grant app:\(app) (the channel's readers: \(readers))"
    }

    /// How the registry refuses app `app` a change to a channel it did not create.
    func notCreated(_ channel: String, by app: String, _ action: String) -> String {
        "channel '\(channel)' was not created by sandboxed app \(app) of user \(ua); a sandboxed app may not \(action) a channel it did not create"
    }

    /// A's session with A's persistent channel `a/persist`, whose publisher left, and its
    /// segment.
    func session() async throws -> (UserSessionBus, String) {
        let bus = try await UserSessionBus(of: a)
        let published = try await bus.publish(as: a, channel: "a/persist", "A's bytes")
        try #require(published.status == .exited(0), "\(published)")
        return (bus, try #require(try await bus.segments(of: "a/persist", as: a).first))
    }

    @Test func theRegistryRecognisesTheAppByItsFlatpakInfoAndOnlyByIt() async throws {
        let (bus, _) = try await session()
        // The same sandbox without /.flatpak-info is just A.
        let plain = try await bus.cat(as: a, in: bus.sandbox(nil), channel: "a/persist")
        #expect(plain.status == .exited(0) && plain.stdout == "A's bytes", "\(plain)")
        let app = try await bus.cat(as: a, in: bus.sandbox(Self.app), channel: "a/persist")
        #expect(app.status == .exited(77) && app.stderr.contains(unreadable("a/persist", by: Self.app)), "\(app)")
        #expect(!app.stdout.contains("A's bytes"))
    }

    @Test func aSandboxedAppCannotReadItsUsersChannels() async throws {
        let (bus, segment) = try await session()
        let (_, live) = try await bus.hold(as: a, channel: "a/live", "A's live bytes")
        let owner = try #require(
            (try await bus.call(as: a, .registry("ListChannels"))[0].value as? [[Any]])?.first { $0.first as? String == "a/live" }?[1] as? String)
        let sandbox = bus.sandbox(Self.app)

        let cat = try await bus.cat(as: a, in: sandbox, channel: "a/live")
        #expect(cat.status == .exited(77) && cat.stderr.contains(unreadable("a/live", by: Self.app)), "\(cat)")
        let replies = try await bus.call(
            as: a, in: sandbox, .registry("OpenSegment", "s", segment), .registry("Lookup", "ss", "a/persist", "k"),
            .registry("OpenSegment", "s", live), .publisherOpenSegment(owner: owner, segment: live), .registry("ListChannels"))
        #expect(replies[0].isError("AccessDenied", saying: unreadable("a/persist", by: Self.app)), "\(replies[0])")
        #expect(replies[1].isError("AccessDenied", saying: unreadable("a/persist", by: Self.app)), "\(replies[1])")
        #expect(replies[2].isError("AccessDenied", saying: unreadable("a/live", by: Self.app)), "\(replies[2])")
        // A's publisher checks the app itself, and recognises it too.
        #expect(replies[3].isError("AccessDenied", saying: unreadable("a/live", by: Self.app)), "\(replies[3])")
        #expect((replies[4].value as? [Any])?.isEmpty == true, "\(replies[4])")

        let own = try await bus.cat(as: a, channel: "a/live")
        #expect(own.stdout == "A's live bytes", "\(own)")
    }

    @Test func aSandboxedAppCannotUnregisterItsUsersPersistentData() async throws {
        let (bus, segment) = try await session()
        let reply = try await bus.call(as: a, in: bus.sandbox(Self.app), .registry("UnregisterSegment", "s", segment))[0]
        #expect(reply.isError("AccessDenied", saying: notCreated("a/persist", by: Self.app, "unregister a segment of")), "\(reply)")
        #expect(try await bus.segments(of: "a/persist", as: a) == [segment])
        #expect(try await bus.cat(as: a, channel: "a/persist").stdout == "A's bytes")
    }

    @Test func aSandboxedAppCannotReplaceOrContinueItsUsersPersistentData() async throws {
        let (bus, segment) = try await session()
        let sandbox = bus.sandbox(Self.app)
        let next = try craftedSegment(channel: "a/persist", generation: 2)
        let fresh = try craftedSegment(channel: "a/persist")
        let replies = try await bus.call(
            as: a, in: sandbox, registerCall("a/persist", next, options: ["persistent": true, "replaces": segment]),
            registerCall("a/persist", fresh, options: ["persistent": true]), inheriting: [next.fileDescriptor, fresh.fileDescriptor])
        for reply in replies {
            #expect(reply.isError("AccessDenied", saying: notCreated("a/persist", by: Self.app, "register on")), "\(reply)")
        }
        // The command line, which reads the history it would continue first.
        let cli = try await bus.publish(as: a, in: sandbox, channel: "a/persist", "the app's bytes")
        #expect(cli.status == .exited(77) && cli.stderr.contains(unreadable("a/persist", by: Self.app)), "\(cli)")

        #expect(try await bus.segments(of: "a/persist", as: a) == [segment])
        #expect(try await bus.cat(as: a, channel: "a/persist").stdout == "A's bytes")
    }

    @Test func aChannelThatGrantsAnAppIsReadableByThatAppAndNoOther() async throws {
        let bus = try await UserSessionBus(of: a)
        let published = try await bus.publish(as: a, channel: "a/for-app", "for the app", readers: "app:\(Self.app)")
        try #require(published.status == .exited(0), "\(published)")

        let granted = try await bus.cat(as: a, in: bus.sandbox(Self.app), channel: "a/for-app")
        #expect(granted.status == .exited(0) && granted.stdout == "for the app", "\(granted)")
        let other = try await bus.cat(as: a, in: bus.sandbox(Self.other), channel: "a/for-app")
        #expect(
            other.status == .exited(77)
                && other.stderr.contains(unreadable("a/for-app", by: Self.other, readers: "its own user, root and app:\(Self.app)")), "\(other)")
        #expect(try await bus.cat(as: a, channel: "a/for-app").stdout == "for the app")
    }

    @Test func anAppsOwnChannelIsReadableByItAndContinuedByNoOtherApp() async throws {
        let bus = try await UserSessionBus(of: a)
        let mine = bus.sandbox(Self.app), theirs = bus.sandbox(Self.other)
        let published = try await bus.publish(as: a, in: mine, channel: "app/own", "the app's bytes")
        try #require(published.status == .exited(0), "\(published)")
        let segment = try #require(try await bus.segments(of: "app/own", as: a).first)

        let own = try await bus.cat(as: a, in: mine, channel: "app/own")
        #expect(own.status == .exited(0) && own.stdout == "the app's bytes", "\(own)")
        let read = try await bus.cat(as: a, in: theirs, channel: "app/own")
        #expect(read.status == .exited(77) && read.stderr.contains(unreadable("app/own", by: Self.other)), "\(read)")
        let next = try craftedSegment(channel: "app/own", generation: 2)
        let replies = try await bus.call(
            as: a, in: theirs, registerCall("app/own", next, options: ["persistent": true, "replaces": segment]),
            .registry("UnregisterSegment", "s", segment), inheriting: [next.fileDescriptor])
        #expect(replies[0].isError("AccessDenied", saying: notCreated("app/own", by: Self.other, "register on")), "\(replies[0])")
        #expect(replies[1].isError("AccessDenied", saying: notCreated("app/own", by: Self.other, "unregister a segment of")), "\(replies[1])")

        // The app continues its own channel; its user reads it.
        let continued = try await bus.publish(as: a, in: mine, channel: "app/own", "the app's next bytes")
        #expect(continued.status == .exited(0), "\(continued)")
        #expect(try await bus.cat(as: a, in: mine, channel: "app/own").stdout == "the app's next bytes")
        #expect(try await bus.cat(as: a, channel: "app/own").stdout == "the app's next bytes")
    }
}

extension SandboxTests {
    /// A publisher inside a sandbox has PIDs of its own: those the bus gives for its
    /// callers name other processes there or none, so it judges no caller by them. Its
    /// readers read through the registry, which sees the whole system.
    @Test func aSandboxedPublisherJudgesNoCallerByAProcessIDItCannotResolve() async throws {
        let bus = try await UserSessionBus(of: a)
        let (_, live) = try await bus.hold(as: a, in: bus.sandbox(Self.app), channel: "app/live", "the app's live bytes")
        let owner = try #require(
            (try await bus.call(as: a, .registry("ListChannels"))[0].value as? [[Any]])?.first { $0.first as? String == "app/live" }?[1] as? String)
        let namespace = "process by its ID in another PID namespace than this process's (this process runs in a sandbox of its own)"
        for sandbox in [nil, bus.sandbox(Self.other), bus.sandbox(Self.app)] {
            let reply = try await bus.call(as: a, in: sandbox, .publisherOpenSegment(owner: owner, segment: live))[0]
            #expect(reply.isError("AccessDenied", saying: namespace), "\(sandbox?.appID ?? "A"): \(reply)")
        }
        let registry = try await bus.call(as: a, .registry("OpenSegment", "s", live))[0]
        #expect(registry.succeeded, "\(registry)")
        #expect(try await bus.cat(as: a, in: bus.sandbox(Self.app), channel: "app/live").stdout == "the app's live bytes")
    }
}
