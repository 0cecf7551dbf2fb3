import CShmBusLinux
import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing

/// A private bus of its own with a real `shmbus daemon` process on it.
final class RegistryFixture: Sendable {
    let bus: PrivateBus
    let daemon: ChildProcess?
    let shmbus = BuiltProducts.path("shmbus")

    var address: String { bus.address }

    /// Starts a bus (`busDaemon`'s) and (unless `startDaemon` is false) the daemon,
    /// waiting until it owns its name.
    init(
        startDaemon: Bool = true, daemonArguments: [String] = [], serviceDirectories: [String] = [],
        busDaemon: PrivateBus.Daemon? = nil
    ) async throws {
        // On a thread of its own: starting the bus blocks until it prints its address,
        // and dbus-broker's controller is a Python program (a second or more on a
        // loaded machine) that would hold a thread of the two-thread pool meanwhile.
        bus = try await onOwnThread { try PrivateBus(serviceDirectories: serviceDirectories, daemon: busDaemon) }
        if startDaemon {
            daemon = try Self.startDaemon(Self.daemonExecutable, address: bus.address, arguments: daemonArguments)
            try await waitForRegistry()
        } else {
            daemon = nil
        }
    }

    /// The `shmbus` that runs the daemon: the built one, or `SHMBUS_TEST_DAEMON` (an
    /// older build, to compare before and after in one run, as docs/RELIABILITY.md does).
    static var daemonExecutable: String {
        ProcessInfo.processInfo.environment["SHMBUS_TEST_DAEMON"].flatMap { $0.isEmpty ? nil : $0 } ?? BuiltProducts.path("shmbus")
    }

    static func startDaemon(_ shmbus: String, address: String, arguments: [String] = []) throws -> ChildProcess {
        try ChildProcess(shmbus, ["daemon", "--bus", address, "--log-level", "warning"] + arguments, stdout: .null, stderr: .inherit)
    }

    deinit {
        daemon?.signal(SIGKILL)
        daemon?.waitUntilExit()
        bus.stop()
    }

    /// A publisher on this bus whose segments fill after `capacity` bytes and are
    /// collected only when full: many generations from few chunks.
    func smallSegmentPublisher(channel: String, capacity: UInt64 = 64 << 10) async throws -> Publisher {
        var options = Publisher.Options()
        options.capacity = capacity
        options.garbageCollection = .whenFull
        return try await Publisher.open(channel: channel, on: .address(address), options: options)
    }

    func connect() async throws -> DBusConnection {
        try await DBusConnection.connect(to: bus.bus)
    }

    func client() async throws -> RegistryClient {
        RegistryClient(connection: try await connect())
    }

    /// Waits until someone owns org.shmbus.Registry1 on this bus. The timeout only keeps
    /// a daemon that never starts from hanging the test: a process started on two cores
    /// shared with the whole suite (or under TSan) can take seconds.
    func waitForRegistry(timeout: Duration = .seconds(60)) async throws {
        let connection = try await connect()
        let deadline = ContinuousClock.now + timeout
        while try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil {
            guard ContinuousClock.now < deadline else { throw ShmBusError(.registryUnavailable, "the daemon did not start") }
            try await Task.sleep(for: .milliseconds(20))
        }
        connection.close()
    }

    /// Runs the shmbus command line against this bus.
    func run(_ arguments: [String], stdin: ChildProcess.Stream = .null) async throws -> (status: ChildProcess.Termination, stdout: String, stderr: String) {
        try await BuiltProducts.run(shmbus, arguments + ["--bus", address], stdin: stdin)
    }
}

/// A real sealed segment with a few chunks, as a publisher would make it.
func makeSegment(channel: String, chunks: [(key: String, bytes: [UInt8])], capacity: UInt64 = 1 << 20) throws -> ChannelWriter {
    let writer = try ChannelWriter(channel: channel, capacity: capacity)
    for chunk in chunks {
        try chunk.bytes.withUnsafeBytes { _ = try writer.append($0, key: chunk.key) }
    }
    return writer
}

/// The first element of `sequence` that satisfies `predicate`, or nil after `timeout`
/// (a bound against a peer that never sends it, not a limit on how long it may take).
func first<S: AsyncSequence & Sendable>(
    _ sequence: S, within timeout: Duration = .seconds(60), where predicate: @escaping @Sendable (S.Element) -> Bool
) async throws -> S.Element? where S.Element: Sendable {
    try await withThrowingTaskGroup(of: S.Element?.self) { group in
        group.addTask {
            for try await element in sequence where predicate(element) { return element }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let result = try await group.next() ?? nil
        group.cancelAll()
        return result
    }
}
