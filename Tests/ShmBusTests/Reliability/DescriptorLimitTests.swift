import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// The daemon under a low RLIMIT_NOFILE (issue 13), started through `prlimit`: each
/// segment costs it descriptors (its own read-only one and the doorbell it hands to
/// subscribers), and at the common soft limit of 1,024 it used to fail registrations
/// after ~1,011 segments with BadSegment, Failed and InvalidArgs mixed.
@Suite(.serialized) struct DescriptorLimitTests {
    /// A bus and a daemon run as `prlimit --nofile=SOFT:HARD shmbus daemon …` (prlimit
    /// execs the daemon, so the child is the daemon itself).
    static func daemon(soft: Int, hard: Int) async throws -> (RegistryFixture, ChildProcess) {
        let fixture = try await RegistryFixture(startDaemon: false)
        let daemon = try ChildProcess(
            "prlimit",
            ["--nofile=\(soft):\(hard)", RegistryFixture.daemonExecutable, "daemon", "--bus", fixture.address, "--log-level", "warning",
             "--max-segments-per-connection", "100000"],
            stdout: .null, stderr: .inherit)
        try await fixture.waitForRegistry()
        return (fixture, daemon)
    }

    /// Registers segments with doorbells, as publishers do, until `refusals` were
    /// refused or `attempts` were made; returns the count registered and the refusals
    /// by error code (and the first message of each code).
    static func fill(_ client: RegistryClient, attempts: Int, refusals: Int = 20, doorbells: Bool = true) async throws
        -> (registered: Int, codes: [String: Int], messages: [String: String])
    {
        var registered = 0
        var codes: [String: Int] = [:]
        var messages: [String: String] = [:]
        for index in 0..<attempts where codes.values.reduce(0, +) < refusals {
            let writer = try ChannelWriter(channel: "fd-\(index)", capacity: 16 << 10)
            do {
                _ = try await client.registerSegment(
                    channel: writer.channel, fd: writer.current.fileDescriptor,
                    options: .init(doorbell: doorbells ? writer.doorbell.fileDescriptor : nil))
                registered += 1
            } catch {
                codes[error.code.rawValue, default: 0] += 1
                if messages[error.code.rawValue] == nil { messages[error.code.rawValue] = error.message }
            }
        }
        return (registered, codes, messages)
    }

    /// The soft RLIMIT_NOFILE of a process, from /proc/PID/limits.
    static func softFileLimit(of pid: pid_t) -> Int? {
        guard let limits = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) else { return nil }
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        return line.flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first }.flatMap { Int($0) }
    }

    @Test(.timeLimit(.minutes(10)), arguments: [false, true])
    func atTheCommonSoftLimitRegistrationsAreRefusedAsQuotaExceeded(doorbells: Bool) async throws {
        let (fixture, daemon) = try await Self.daemon(soft: 1024, hard: 1024)
        defer {
            daemon.signal(SIGKILL)
            _ = daemon.waitUntilExit()
        }
        let client = try await fixture.client()
        let (registered, codes, messages) = try await Self.fill(client, attempts: 1_500, doorbells: doorbells)
        let fds = Reliability.openDescriptors(of: daemon.pid)
        #expect(codes.keys.sorted() == ["QuotaExceeded"], "\(codes) \(messages)")
        // A burst at the limit, 200 registrations at once from 8 connections: refused
        // the same way, whichever check meets it first.
        var burst: [String: Int] = [:]
        let clients = try await (0..<8).asyncMap { _ in try await fixture.client() }
        try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<200 {
                group.addTask {
                    let writer = try ChannelWriter(channel: "burst-\(index)", capacity: 16 << 10)
                    do {
                        _ = try await clients[index % 8].registerSegment(
                            channel: writer.channel, fd: writer.current.fileDescriptor,
                            options: .init(doorbell: doorbells ? writer.doorbell.fileDescriptor : nil))
                        return "registered"
                    } catch let error as ShmBusError {
                        return error.code.rawValue
                    }
                }
            }
            for try await outcome in group { burst[outcome, default: 0] += 1 }
        }
        #expect(burst.keys.sorted() == ["QuotaExceeded"], "\(burst)")
        // Still on the bus and serving: a new connection is answered, and a segment
        // unregistered makes room for another.
        let other = try await fixture.client()
        #expect(try await other.channels().count == registered)
        var again = "no segment to unregister"
        if let first = try await client.segments().first {
            try await client.unregisterSegment(first.name)
            let writer = try ChannelWriter(channel: "fd-again", capacity: 16 << 10)
            do {
                _ = try await client.registerSegment(
                    channel: writer.channel, fd: writer.current.fileDescriptor,
                    options: .init(doorbell: doorbells ? writer.doorbell.fileDescriptor : nil))
                again = "registered"
            } catch {
                again = error.code.rawValue
            }
        }
        #expect(again == "registered")
        Reliability.report(
            doorbells ? "descriptors-1024-doorbells" : "descriptors-1024",
            [
                "registered": registered, "refusals": codes.map { "\($0.key):\($0.value)" }.sorted(),
                "messages": messages.map { "\($0.key): \($0.value)" }.sorted(), "daemon_fds": fds,
                "burst_of_200": burst.map { "\($0.key):\($0.value)" }.sorted(), "after_one_unregistered": again,
            ])
    }

    @Test(.timeLimit(.minutes(10))) func theDaemonRaisesItsSoftLimitToTheHardOne() async throws {
        let (fixture, daemon) = try await Self.daemon(soft: 1024, hard: 4096)
        defer {
            daemon.signal(SIGKILL)
            _ = daemon.waitUntilExit()
        }
        let soft = Self.softFileLimit(of: daemon.pid)
        #expect(soft == 4096)
        let client = try await fixture.client()
        // More than the 1,024 soft limit allows (336 segments with doorbells).
        let (registered, codes, messages) = try await Self.fill(client, attempts: 1_000, refusals: 1)
        #expect(registered == 1_000, "\(codes) \(messages)")
        Reliability.report("descriptors-1024-4096", ["soft_limit_after_start": soft ?? -1, "registered": registered])
    }
}

extension Sequence {
    /// `map` with an async transform, one element after the other.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
