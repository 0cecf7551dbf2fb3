import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// The `shmbus` command against bad input: each test runs the built binary against a
/// private dbus-daemon with a real registry, and checks the exit code (sysexits.h), the
/// one line on stderr, and what the registry holds afterwards.
@Suite struct CommandLineContractTests {
    // MARK: publish: unreadable input publishes nothing

    @Test func publishRefusesADirectoryAndPublishesNothing() async throws {
        let fixture = try await RegistryFixture()
        let directory = try Self.temporaryDirectory()
        // --persistent: a segment left behind would still be there after the command exits.
        let (status, out, err) = try await fixture.run(["publish", "--channel", "input/dir", "--persistent", directory])
        #expect(status == .exited(66), "\(err)")
        #expect(err == "shmbus: cannot publish \(directory): Is a directory\n")
        #expect(out.isEmpty)
        try await Self.expectNoChannel("input/dir", fixture)
    }

    @Test func publishReportsAReadErrorOfProcSelfMemAndPublishesNothing() async throws {
        let fixture = try await RegistryFixture()
        // stat says 0 bytes; reading offset 0 fails with EIO.
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/mem", "--persistent", "/proc/self/mem"])
        #expect(status == .exited(74), "\(err)")
        #expect(err == "shmbus: cannot read /proc/self/mem: Input/output error\n")
        try await Self.expectNoChannel("input/mem", fixture)
    }

    @Test func publishReportsAReadErrorOfADirectoryOnStdin() async throws {
        let fixture = try await RegistryFixture()
        let raw = open(try Self.temporaryDirectory(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(raw >= 0)
        let directory = UnixFileDescriptor(taking: raw)
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/stdin", "--persistent"], stdin: .fileDescriptor(directory))
        #expect(status == .exited(74), "\(err)")
        #expect(err == "shmbus: cannot read stdin: Is a directory\n")
        try await Self.expectNoChannel("input/stdin", fixture)
    }

    @Test(.enabled(if: getuid() != 0, "root reads any file")) func publishRefusesAFileItMayNotRead() async throws {
        let fixture = try await RegistryFixture()
        let path = try Self.temporaryDirectory() + "/secret"
        try Data("secret".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0)
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/secret", "--persistent", path])
        #expect(status == .exited(66), "\(err)")
        #expect(err == "shmbus: cannot open \(path): Permission denied\n")
        try await Self.expectNoChannel("input/secret", fixture)
    }

    @Test func publishReadsAProcFileWhoseSizeStatDoesNotTell() async throws {
        let fixture = try await RegistryFixture()
        // /proc/version: stat says 0 bytes, reading gives the same line in every process.
        let expected = try Data(contentsOf: URL(fileURLWithPath: "/proc/version"))
        try #require(!expected.isEmpty)
        let (status, out, err) = try await fixture.run(["publish", "--channel", "input/proc", "--key", "v", "--persistent", "/proc/version"])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("length \(expected.count) "), "\(out)")
        let client = try await fixture.client()
        let found = try await client.lookup(channel: "input/proc", key: "v")
        #expect(found.length == UInt64(expected.count))
    }

    @Test func publishWithdrawsItsPersistentSegmentWhenTheChunkDoesNotFit() async throws {
        let fixture = try await RegistryFixture()
        let path = try Self.temporaryDirectory() + "/big"
        try Data(repeating: 7, count: 12 << 10).write(to: URL(fileURLWithPath: path))
        // The chunk is found not to fit only after the segment is registered.
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/big", "--persistent", "--capacity", "4096", path])
        #expect(status == .exited(64), "\(err)")
        #expect(err.contains("does not fit"), "\(err)")
        try await Self.expectNoChannel("input/big", fixture)
    }

    @Test func publishRefusesAnOverlongKeyBeforeRegistering() async throws {
        let fixture = try await RegistryFixture()
        let key = String(repeating: "k", count: 256)
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/key", "--persistent", "--key", key, "/etc/hostname"])
        #expect(status == .exited(64), "\(err)")
        #expect(err.hasPrefix("Error: --key is 256 bytes of UTF-8; the limit is 255\n"), "\(err)")
        try await Self.expectNoChannel("input/key", fixture)
    }

    @Test func publishRefusesATTLThatWouldTrap() async throws {
        let fixture = try await RegistryFixture()
        let (status, _, err) = try await fixture.run(["publish", "--channel", "input/ttl", "--persistent", "--ttl", "\(UInt64.max)", "/etc/hostname"])
        #expect(status == .exited(64), "\(err)")
        #expect(err.hasPrefix("Error: --ttl \(UInt64.max) is too large\n"), "\(err)")
        try await Self.expectNoChannel("input/ttl", fixture)
    }

    // MARK: write failures: 73 and one line

    @Test func catToAFullDeviceExits73WithOneLine() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "out/cat", key: "k")
        let (status, err) = try await Self.run(fixture, ["cat", "--channel", "out/cat", "--key", "k"], stdoutTo: "/dev/full")
        #expect(status == .exited(73), "\(err)")
        #expect(err == "shmbus: cannot write stdout: No space left on device\n")
    }

    @Test func catToAFileUnderARegularFileExits73() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "out/cat-o", key: "k")
        let (status, _, err) = try await fixture.run(["cat", "--channel", "out/cat-o", "--key", "k", "-o", "/etc/hostname/copy"])
        #expect(status == .exited(73), "\(err)")
        #expect(err == "shmbus: cannot create /etc/hostname/copy: Not a directory\n")
    }

    @Test func lsStatSubscribeAndPublishToAFullDeviceExit73() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "out/full", key: "k")
        let segment = try #require(try await fixture.client().channels().first { $0.name == "out/full" }?.currentSegment)
        // stdio's print ignored these failures: the commands used to exit 0.
        for arguments in [
            ["ls"], ["ls", "--json"], ["stat", segment],
            ["subscribe", "--channel", "out/full", "--from", "oldest", "--count", "1"],
            ["publish", "--channel", "out/full2", "/etc/hostname"],
        ] {
            let (status, err) = try await Self.run(fixture, arguments, stdoutTo: "/dev/full")
            #expect(status == .exited(73), "\(arguments): \(err)")
            #expect(err == "shmbus: cannot write stdout: No space left on device\n", "\(arguments)")
        }
    }

    @Test func subscribeOutputDirUnderARegularFileExits73WithOneLine() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "out/dir", key: "k")
        let file = try Self.temporaryDirectory() + "/file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let (status, out, err) = try await fixture.run(
            ["subscribe", "--channel", "out/dir", "--from", "oldest", "--count", "1", "--output-dir", "\(file)/chunks"])
        #expect(status == .exited(73), "\(err)")
        #expect(err == "shmbus: cannot create directory \(file)/chunks: Not a directory\n")
        #expect(out.isEmpty, "nothing received before the directory is there")
    }

    @Test func subscribeOutputDirWhereNoFileCanBeCreatedExits73() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "out/proc", key: "k")
        // /proc/self is a directory (mkdir -p is content), but procfs creates no files.
        let (status, _, err) = try await fixture.run(
            ["subscribe", "--channel", "out/proc", "--from", "oldest", "--count", "1", "--output-dir", "/proc/self"])
        #expect(status == .exited(73), "\(err)")
        #expect(err.hasPrefix("shmbus: cannot create /proc/self/1.bin: "), "\(err)")
        #expect(err.split(separator: "\n").count == 1, "\(err)")
    }

    // MARK: arguments

    @Test func subscribeRefusesACountBelowOne() async throws {
        let fixture = try await RegistryFixture()
        // A chunk is there: the old code printed it for --count 0 and --count=-1.
        try await Self.publishPersistent(fixture, channel: "args/count", key: "k")
        for count in ["--count=0", "--count=-1", "--count=-5"] {
            let (status, out, err) = try await fixture.run(["subscribe", "--channel", "args/count", "--from", "oldest", count])
            #expect(status == .exited(64), "\(count): \(err)")
            #expect(err.hasPrefix("Error: --count must be 1 or more (got \(count.dropFirst(8)))\n"), "\(err)")
            #expect(out.isEmpty, "\(count): \(out)")
        }
        let (_, help, _) = try await BuiltProducts.run(fixture.shmbus, ["subscribe", "--help"])
        #expect(help.contains("1 or more"), "\(help)")
    }

    @Test func daemonRefusesLimitsBelowOne() async throws {
        let bus = try PrivateBus()
        defer { bus.stop() }
        for (option, value) in [
            ("--max-segments", "-1"), ("--max-segments", "0"), ("--max-segments-per-connection", "-3"),
            ("--max-segments-per-connection", "0"), ("--max-bytes-per-connection", "0"),
        ] {
            // A daemon that accepted the limit would run until killed: bounded, so that the
            // test fails instead of hanging.
            let (status, err) = try await Self.runBounded(
                BuiltProducts.path("shmbus"), ["daemon", "--bus", bus.address, "\(option)=\(value)"])
            #expect(status == .exited(64), "\(option)=\(value): \(err)")
            #expect(err.hasPrefix("Error: \(option) must be "), "\(err)")
        }
        let connection = try await DBusConnection.connect(to: .address(bus.address))
        defer { connection.close() }
        #expect(try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil)
    }

    @Test func demoRefusesFramesBelowOne() async throws {
        // --frames=-1 used to trap on an inverted range (signal 4) after starting a bus.
        for frames in ["-1", "0"] {
            let (status, _, err) = try await BuiltProducts.run(BuiltProducts.path("shmbus"), ["demo", "--frames=\(frames)"])
            #expect(status == .exited(64), "\(frames): \(err)")
            #expect(err.hasPrefix("Error: --frames must be 1 or more (got \(frames))\n"), "\(err)")
        }
    }

    @Test func anUnknownOptionIsReportedAsUnknownNotAsAMissingOne() async throws {
        let fixture = try await RegistryFixture()
        for arguments in [
            ["publish", "--chanel", "x", "/etc/hostname"], ["subscribe", "--chanel", "x"], ["cat", "--chanel=x", "--key", "k"],
        ] {
            let (status, _, err) = try await fixture.run(arguments)
            #expect(status == .exited(64), "\(arguments): \(err)")
            #expect(err.hasPrefix("Error: Unknown option '--chanel'. Did you mean '--channel'?\nUsage: shmbus \(arguments[0]) "), "\(err)")
            #expect(!err.contains("Missing expected argument"), "\(err)")
        }
        try await Self.expectNoChannel("x", fixture)
        // After `--`, it is a file name, not an option.
        let (status, _, err) = try await BuiltProducts.run(fixture.shmbus, ["publish", "--bus", fixture.address, "--channel", "x", "--", "--chanel"])
        #expect(status == .exited(66), "\(err)")
        #expect(err == "shmbus: cannot open --chanel: No such file or directory\n")
    }

    // MARK: publish --hold

    @Test(.timeLimit(.minutes(5))) func publishHoldPrintsItsSegmentLineBeforeHolding() async throws {
        let fixture = try await RegistryFixture()
        let child = try ChildProcess(
            fixture.shmbus, ["publish", "--channel", "hold/line", "--hold", "/etc/hostname", "--bus", fixture.address],
            stdout: .pipe, stderr: .inherit)
        // (Held until a signal: a failing test must not leave it running.)
        defer { child.signal(SIGKILL) }
        // The line arrives while the process still holds: it has not exited.
        let line = try #require(try await child.readLine())
        #expect(line.hasPrefix("segment "), "\(line)")
        #expect(!child.hasExited)
        let segment = String(line.split(separator: " ")[1])
        let client = try await fixture.client()
        #expect(try await client.channels().first { $0.name == "hold/line" }?.currentSegment == segment)
        child.signal(SIGTERM)
        #expect(await child.exit() == .exited(0))
    }

    // MARK: subscribe waits for a channel, and says so

    @Test func subscribeSaysItWaitsForAMissingChannelAndExits66() async throws {
        let fixture = try await RegistryFixture()
        let (status, out, err) = try await fixture.run(["subscribe", "--channel", "wait/none", "--wait-for-channel", "1"])
        #expect(status == .exited(66), "\(err)")
        let lines = err.split(separator: "\n")
        #expect(lines.first == "shmbus: waiting up to 1 s for channel 'wait/none' to appear", "\(err)")
        #expect(lines.count == 2 && lines[1].hasPrefix("shmbus: no channel 'wait/none' in the registry"), "\(err)")
        #expect(out.isEmpty)
    }

    @Test func subscribeWithWaitZeroFailsAtOnceWithoutTheWaitingLine() async throws {
        let fixture = try await RegistryFixture()
        let (status, _, err) = try await fixture.run(["subscribe", "--channel", "wait/zero", "--wait-for-channel", "0"])
        #expect(status == .exited(66), "\(err)")
        #expect(!err.contains("waiting"), "\(err)")
        #expect(err.hasPrefix("shmbus: no channel 'wait/zero' in the registry"), "\(err)")
    }

    @Test func subscribeDocumentsTheWaitAndRefusesANegativeOne() async throws {
        let fixture = try await RegistryFixture()
        let (_, wrapped, _) = try await BuiltProducts.run(fixture.shmbus, ["subscribe", "--help"])
        let help = wrapped.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("--wait-for-channel <seconds> Seconds to wait for a channel"), "\(help)")
        #expect(help.contains("saying so on stderr; then exit 66 (0: fail at once). (default: 10.0)"), "\(help)")
        let (status, _, err) = try await fixture.run(["subscribe", "--channel", "wait/neg", "--wait-for-channel=-1"])
        #expect(status == .exited(64), "\(err)")
        #expect(err.hasPrefix("Error: --wait-for-channel takes a number of seconds, 0 or more"), "\(err)")
    }

    @Test func subscribeDoesNotSayItWaitsForAChannelThatIsThere() async throws {
        let fixture = try await RegistryFixture()
        try await Self.publishPersistent(fixture, channel: "wait/there", key: "k")
        let (status, out, err) = try await fixture.run(["subscribe", "--channel", "wait/there", "--from", "oldest", "--count", "1"])
        #expect(status == .exited(0), "\(err)")
        #expect(err.isEmpty, "\(err)")
        #expect(out.hasPrefix("sequence 1 key k length "), "\(out)")
    }

    // MARK: helpers

    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/shmbus-cli-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: try #require(path))
    }

    /// Publishes a small persistent chunk with the real command, so it outlives it.
    static func publishPersistent(_ fixture: RegistryFixture, channel: String, key: String) async throws {
        let (status, _, err) = try await fixture.run(["publish", "--channel", channel, "--key", key, "--persistent", "/etc/hostname"])
        try #require(status == .exited(0), "\(err)")
    }

    static func expectNoChannel(_ name: String, _ fixture: RegistryFixture, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let client = try await fixture.client()
        let channels = try await client.channels()
        #expect(!channels.contains { $0.name == name }, "\(channels)", sourceLocation: sourceLocation)
        let segments = try await client.segments()
        #expect(!segments.contains { $0.channel == name }, "\(segments)", sourceLocation: sourceLocation)
    }

    /// Runs the command with its stdout on `path` (such as /dev/full); returns its status
    /// and stderr.
    static func run(_ fixture: RegistryFixture, _ arguments: [String], stdoutTo path: String) async throws -> (ChildProcess.Termination, String) {
        let raw = open(path, O_WRONLY | O_CLOEXEC)
        try #require(raw >= 0)
        let fd = UnixFileDescriptor(taking: raw)
        let child = try ChildProcess(fixture.shmbus, arguments + ["--bus", fixture.address], stdout: .fileDescriptor(fd), stderr: .pipe)
        let (_, err) = try await child.collectOutput()
        return (await child.exit(), String(decoding: err, as: UTF8.self))
    }

    /// Runs a command that should exit by itself; kills it if it is still running after
    /// a generous 30 s (then its status says so, and the test fails on it).
    static func runBounded(_ executable: String, _ arguments: [String]) async throws -> (ChildProcess.Termination, String) {
        let child = try ChildProcess(executable, arguments, stdout: .null, stderr: .pipe)
        let killer = Task {
            try await Task.sleep(for: .seconds(30))
            child.signal(SIGKILL)
        }
        defer { killer.cancel() }
        let (_, err) = try await child.collectOutput()
        return (await child.exit(), String(decoding: err, as: UTF8.self))
    }
}
