import Foundation
import Locking
import ShmBus
import TestSupport
import Testing

/// `Subscriber.cancel()` from another task ends an iteration that waits for the next
/// chunk, whichever way it waits (the futex path once went on waiting on the doorbell).
@Suite struct SubscriberCancelTests {
    @Test(.timeLimit(.minutes(5)), arguments: [Subscriber.Wait.bus, .futex])
    func cancellingTheSubscriberEndsAWaitingIteration(wait: Subscriber.Wait) async throws {
        let fixture = try await RegistryFixture()
        let channel = "cancel/\(wait)"
        let publisher = try await Publisher.open(channel: channel, on: .address(fixture.address))
        let subscriber = try await Subscriber.open(channel: channel, on: .address(fixture.address), options: .init(start: .oldest, wait: wait))
        let received = Lock(0)
        let reader = Task {
            for try await _ in subscriber.chunks { received.withLock { $0 += 1 } }
        }
        _ = try publisher.publish(Array("one".utf8))
        let deadline = ContinuousClock.now + .seconds(30)
        while received.withLock({ $0 }) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(received.withLock { $0 } == 1)
        // The reader now waits for a second chunk that never comes.
        subscriber.cancel()
        try await reader.value
        await publisher.close()
    }
}
