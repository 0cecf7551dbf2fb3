import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// `shmbus top` on a real terminal (tmux, on a private socket) against a real registry
/// on a private bus and real publishers: what a person sees and types.
@Suite struct TopTerminalTests {
    /// Three channels whose orders differ: by name a, m, z; by chunks/s z (200/s of 64
    /// bytes), m (10/s of 10,000 bytes), a (idle); by bytes/s m, z, a.
    final class Channels: Sendable {
        let prefix: String
        let publishers: [Publisher]
        let feeders: [Feeder]

        init(_ fixture: RegistryFixture) async throws {
            let prefix = "top\(TestBus.uniqueSuffix())"
            self.prefix = prefix
            let names = ["a-idle", "m-slow", "z-busy"].map { "\(prefix)/\($0)" }
            var publishers: [Publisher] = []
            for name in names { publishers.append(try await Publisher.open(channel: name, on: .address(fixture.address))) }
            try publishers[0].publish([UInt8](repeating: 1, count: 64))
            let (slow, busy) = (publishers[1], publishers[2])
            feeders = [
                Feeder(every: .milliseconds(100)) { _ = try? slow.publish([UInt8](repeating: 2, count: 10_000)) },
                Feeder(every: .milliseconds(5)) { _ = try? busy.publish([UInt8](repeating: 3, count: 64)) },
            ]
            self.publishers = publishers
        }

        func name(_ short: String) -> String { "\(prefix)/\(short)" }

        func close() async {
            for feeder in feeders { feeder.stop() }
            for publisher in publishers { await publisher.close() }
        }
    }

    /// A script that runs top, then says how it ended and how the terminal was left. The
    /// shell traps SIGINT, as an interactive one ignores it, so that ^C ends top alone.
    static func script(_ fixture: RegistryFixture, _ arguments: String = "", pidFile: String? = nil) -> String {
        let top = "'\(fixture.shmbus)' top --bus '\(fixture.address)' \(arguments)"
        let run = pidFile.map { "sh -c 'echo $$ > \($0); exec \(top.replacingOccurrences(of: "'", with: "'\\''"))'" } ?? top
        return "trap : INT\n\(run)\necho top-exit=$?\nstty -a\necho stty-done\nexec sleep 600\n"
    }

    /// The channels' rows on `screen`, in order of appearance.
    static func order(_ screen: [String], _ channels: Channels) -> [String] {
        screen.compactMap { line in line.hasPrefix(channels.prefix + "/") ? String(line.split(separator: " ")[0].dropFirst(channels.prefix.count + 1)) : nil }
    }

    /// The right-aligned cell of `column` in `channel`'s row (it ends where its header does).
    static func cell(_ screen: [String], channel: String, column: String) -> String? {
        guard let header = screen.first(where: { $0.hasPrefix("CHANNEL") }), let range = header.range(of: column),
            let row = screen.first(where: { $0.hasPrefix(channel + " ") })
        else { return nil }
        let end = header.distance(from: header.startIndex, to: range.upperBound)
        return row.prefix(end).split(separator: " ").last.map(String.init)
    }

    /// What `stty -a` printed after top ended: canonical mode and echo are back.
    static func expectRestored(_ screen: [String], exit: Int, _ session: TmuxSession) async throws {
        #expect(screen.contains("top-exit=\(exit)"), "\(screen.joined(separator: "\n"))")
        let flags = Set(screen.joined(separator: " ").split(separator: " ").map(String.init))
        #expect(flags.contains("icanon") && flags.contains("echo"), "stty: \(screen.joined(separator: "\n"))")
        #expect(!flags.contains("-icanon") && !flags.contains("-echo"))
        #expect(try await session.format("#{alternate_on}") == "0", "back on the normal screen")
        #expect(try await session.format("#{cursor_flag}") == "1", "the cursor shows again")
    }

    @Test(.timeLimit(.minutes(5))) func showsTheChannelsMovingSortsFiltersAndQuits() async throws {
        let fixture = try await RegistryFixture()
        let channels = try await Channels(fixture)
        let session = try await TmuxSession(script: Self.script(fixture))

        let busy = channels.name("z-busy")
        var screen = try await session.eventually("the busy channel with a rate") {
            (Self.cell($0, channel: busy, column: "CHUNKS/S").flatMap(Double.init) ?? 0) > 0
        }
        #expect(try await session.format("#{alternate_on}") == "1", "drawn on the alternate screen")
        #expect(try await session.format("#{cursor_flag}") == "0", "with the cursor hidden")
        #expect(screen.contains { $0.contains("sort: rate") })
        let first = try #require(Self.cell(screen, channel: busy, column: "PUBLISHED").flatMap(UInt64.init))
        screen = try await session.eventually("the busy channel's count moving") {
            (Self.cell($0, channel: busy, column: "PUBLISHED").flatMap(UInt64.init) ?? 0) > first
        }
        #expect(Self.cell(screen, channel: busy, column: "READERS") == "0")
        #expect(screen.contains { $0.hasPrefix(busy) && $0.contains(" \(getpid()) ") }, "the publisher's process")

        // r (the default) orders by chunks/s, b by bytes/s, n by name.
        try await session.eventually("by chunks/s") { Self.order($0, channels) == ["z-busy", "m-slow", "a-idle"] }
        try await session.send("b")
        try await session.eventually("by bytes/s") { $0.contains { $0.contains("sort: bytes") } && Self.order($0, channels) == ["m-slow", "z-busy", "a-idle"] }
        try await session.send("n")
        try await session.eventually("by name") { $0.contains { $0.contains("sort: name") } && Self.order($0, channels) == ["a-idle", "m-slow", "z-busy"] }
        try await session.send("r")
        try await session.eventually("by chunks/s again") { $0.contains { $0.contains("sort: rate") } && Self.order($0, channels) == ["z-busy", "m-slow", "a-idle"] }

        // / types a prefix (shown while typed), Enter sets it; an empty one shows all again.
        try await session.send("/")
        try await session.sendLiteral(channels.name("m"))
        try await session.eventually("the prefix being typed") { $0.contains { $0.hasPrefix("prefix: \(channels.name("m"))_") } }
        try await session.send("Enter")
        try await session.eventually("only the m channel") { $0.contains { $0.contains("prefix: \(channels.name("m"))") } && Self.order($0, channels) == ["m-slow"] }
        try await session.send("/", "Enter")
        try await session.eventually("every channel again") { Self.order($0, channels).count == 3 }

        try await session.send("q")
        screen = try await session.eventually("top ended") { $0.contains("stty-done") }
        try await Self.expectRestored(screen, exit: 0, session)
        await channels.close()
    }

    @Test(.timeLimit(.minutes(5))) func redrawsOnResizeAndRestoresTheTerminalOnSignals() async throws {
        let fixture = try await RegistryFixture()
        let channels = try await Channels(fixture)
        let session = try await TmuxSession(script: Self.script(fixture), columns: 160, rows: 30)
        try await session.eventually("the table") { $0.contains { $0.hasPrefix("CHANNEL") && $0.hasSuffix("PUBLISHER") } }
        // SIGWINCH: the next frame is cut to the new width, without waiting for a refresh.
        try await session.tmux(["resize-window", "-t", "0", "-x", "60", "-y", "12"])
        let narrow = try await session.eventually("the table cut to 60 columns") {
            $0.contains { $0.hasPrefix("CHANNEL") && !$0.contains("PUBLISHER") }
        }
        #expect(narrow.allSatisfy { $0.count <= 60 })
        try await session.tmux(["resize-window", "-t", "0", "-x", "160", "-y", "30"])
        try await session.eventually("the whole table again") { $0.contains { $0.hasPrefix("CHANNEL") && $0.hasSuffix("PUBLISHER") } }
        // ^C on the terminal: SIGINT, exit 130, the terminal as it was.
        try await session.send("C-c")
        let screen = try await session.eventually("top ended") { $0.contains("stty-done") }
        try await Self.expectRestored(screen, exit: 130, session)

        // SIGTERM from elsewhere (a service manager, kill): exit 143, restored as well.
        let pidFile = session.directory.appendingPathComponent("pid").path
        let second = try await TmuxSession(script: Self.script(fixture, pidFile: pidFile))
        try await second.eventually("the table") { $0.contains { $0.hasPrefix("CHANNEL") } }
        let pid = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, SIGTERM) == 0)
        let after = try await second.eventually("top ended") { $0.contains("stty-done") }
        try await Self.expectRestored(after, exit: 143, second)
        await channels.close()
    }
}
