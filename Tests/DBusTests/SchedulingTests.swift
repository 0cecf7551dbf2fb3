import DBus
import Foundation
import Locking
import ShmBusSystem
import TestSupport
import Testing

/// `DBusConnection.CallScheduling`: per-sender queues served in turn, bounded
/// concurrency, descriptors in waiting calls bounded. Asserted on counts and order,
/// never on timings.
@Suite struct SchedulingTests {
    /// Handlers running now, per sender, and the most seen at once.
    final class Concurrency: Sendable {
        private let state = Lock((running: [String: Int](), total: 0, mostPerSender: 0, mostTotal: 0))

        func enter(_ sender: String) {
            state.withLock { s in
                s.running[sender, default: 0] += 1
                s.total += 1
                s.mostPerSender = max(s.mostPerSender, s.running[sender]!)
                s.mostTotal = max(s.mostTotal, s.total)
            }
        }

        func leave(_ sender: String) {
            state.withLock { s in
                s.running[sender, default: 1] -= 1
                s.total -= 1
            }
        }

        var most: (perSender: Int, total: Int) { state.withLock { ($0.mostPerSender, $0.mostTotal) } }
    }

    static let interfaceName = "org.shmbus.Test.Scheduling"

    /// A service whose `Sleep` records its concurrency and whose `Hold` keeps a
    /// descriptor for a while.
    static func service(_ scheduling: DBusConnection.CallScheduling, _ concurrency: Concurrency) async throws -> (DBusConnection, DBusExport) {
        let interface = DBusInterface(interfaceName) {
            DBusMethod("Sleep", inputs: [.init("milliseconds", "u")], outputs: [.init("slept", "b")]) { call in
                concurrency.enter(call.sender)
                defer { concurrency.leave(call.sender) }
                let milliseconds = try call.arguments.decode(UInt32.self)
                try await Task.sleep(for: .milliseconds(milliseconds))
                return [.boolean(true)]
            }
            DBusMethod("Hold", inputs: [.init("fd", "h")]) { _ in
                try await Task.sleep(for: .milliseconds(300))
                return []
            }
        }
        let connection = try await DBusConnection.connect(to: TestBus.shared.bus, scheduling: scheduling)
        return (connection, try await connection.export([interface], at: "/org/shmbus/test/Scheduling"))
    }

    static func call(_ client: DBusConnection, _ service: DBusConnection, _ method: String, _ arguments: [DBusValue]) async throws {
        // A flood waits behind slots as small as 2: the timeout only guards a hang.
        _ = try await client.call(
            destination: service.uniqueName, path: "/org/shmbus/test/Scheduling", interface: interfaceName, method: method, arguments,
            timeout: .seconds(300))
    }

    @Test func aSenderRunsAtMostItsShareAndTheConnectionItsTotal() async throws {
        let concurrency = Concurrency()
        let (service, export) = try await Self.service(.init(perSender: 2, total: 3), concurrency)
        let clients = [try await TestBus.connect(), try await TestBus.connect()]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<60 {
                group.addTask { try await Self.call(clients[index % 2], service, "Sleep", [.uint32(5)]) }
            }
            try await group.waitForAll()
        }
        #expect(concurrency.most.perSender == 2)
        // Busy senders share 3 slots; a fresh sender's call (each client's first) may
        // take one of 3 more.
        #expect((3...6).contains(concurrency.most.total), "\(concurrency.most.total)")
        withExtendedLifetime(export) {}
    }

    @Test func aBystanderIsAnsweredWhileAnotherSendersFloodWaits() async throws {
        let concurrency = Concurrency()
        let (service, export) = try await Self.service(.init(perSender: 2, total: 2), concurrency)
        let flooder = try await TestBus.connect()
        let bystander = try await TestBus.connect()
        let answered = Lock(0)
        let flood = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<200 {
                    group.addTask {
                        try await Self.call(flooder, service, "Sleep", [.uint32(2)])
                        answered.withLock { $0 += 1 }
                    }
                }
                try await group.waitForAll()
            }
        }
        // Once the flood is being served, the bystander asks: its call waits for one
        // slot, not for the 200 calls queued before it.
        while answered.withLock({ $0 }) < 10 { try await Task.sleep(for: .milliseconds(1)) }
        try await Self.call(bystander, service, "Sleep", [.uint32(0)])
        let floodAnsweredBefore = answered.withLock { $0 }
        try await flood.value
        #expect(floodAnsweredBefore < 150, "the bystander came after \(floodAnsweredBefore) of the flood's 200 calls")
        withExtendedLifetime(export) {}
    }

    @Test func callsWhoseDescriptorsWouldPassTheLimitAreRefusedAtOnce() async throws {
        var scheduling = DBusConnection.CallScheduling(perSender: 1, total: 1, queuedUnixFDs: 2)
        scheduling.refusalErrorName = "org.shmbus.Test.Error.TooManyDescriptors"
        let (service, export) = try await Self.service(scheduling, Concurrency())
        let client = try await TestBus.connect()
        let pipe = try UnixFileDescriptor.pipe()
        // The first runs at once (its descriptor no longer waits), two wait, two are
        // refused.
        let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do {
                        try await Self.call(client, service, "Hold", [.unixFD(pipe.read)])
                        return "held"
                    } catch let error as DBusError {
                        return error.name
                    }
                }
            }
            var outcomes: [String: Int] = [:]
            for try await outcome in group { outcomes[outcome, default: 0] += 1 }
            return outcomes
        }
        #expect(outcomes == ["held": 3, "org.shmbus.Test.Error.TooManyDescriptors": 2])
        withExtendedLifetime(export) {}
    }

    /// `observeServedCalls`: each answered call is reported once, with its sender, and
    /// whether that sender was idle; a handler that sleeps shows in the handler's phase.
    @Test func servedCallsAreReportedWithTheirPhases() async throws {
        let (service, export) = try await Self.service(.init(perSender: 1, total: 1), Concurrency())
        let reports = Lock<[DBusConnection.ServedCall]>([])
        service.observeServedCalls { call in reports.withLock { $0.append(call) } }
        let bystander = try await TestBus.connect()
        try await Self.call(bystander, service, "Sleep", [.uint32(30)])
        // Five at once from one sender, one handler a sender: the first finds it idle,
        // and those that come while an earlier one waits or runs do not (on a loaded
        // machine some may come only after the earlier ones ended: at least one does not).
        let flooder = try await TestBus.connect()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 { group.addTask { try await Self.call(flooder, service, "Sleep", [.uint32(200)]) } }
            try await group.waitForAll()
        }
        service.observeServedCalls(nil)
        let seen = reports.withLock { $0 }
        let alone = try #require(seen.first { $0.sender == bystander.uniqueName })
        #expect(alone.member == "Sleep" && alone.interface == Self.interfaceName)
        #expect(alone.fromIdleSender)
        #expect(alone.handling >= .milliseconds(30) && alone.total >= alone.handling)
        let flood = seen.filter { $0.sender == flooder.uniqueName }
        #expect(flood.count == 5)
        #expect(flood.filter { !$0.fromIdleSender }.count >= 1, "\(flood.map(\.fromIdleSender))")
        #expect(flood.allSatisfy { $0.handling >= .milliseconds(200) })
        withExtendedLifetime(export) {}
    }
}
