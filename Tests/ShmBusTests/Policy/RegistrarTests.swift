import Locking
import Logging
import SharedSegments
@testable import ShmBus
import Testing

/// The registrar's rules, without a bus: a registry that records what it is asked and
/// answers as told, and real segments.
@Suite struct RegistrarTests {
    /// A registry that keeps, per call, the segment named in the descriptor's header
    /// and the segment it replaces; `down` makes every call fail as an absent registry
    /// does.
    final class RecordingRegistry: RegistrarRegistry {
        struct Registration: Equatable {
            var segment: String
            var replaces: String?
            var hasDoorbell: Bool
        }

        struct State {
            var registrations: [Registration] = []
            var current: (segment: String, owner: String)?
            var down = false
        }

        let state = Lock(State())

        func registerSegment(channel: String, fd: UnixFileDescriptor, options: Registry1.RegisterOptions) async throws(ShmBusError) {
            let name: String
            do { name = try SegmentReader(fd: fd).name } catch { throw ShmBusError(error) }
            try state.withLock { (state) throws(ShmBusError) in
                if state.down { throw ShmBusError(.registryUnavailable, "down") }
                state.registrations.append(.init(segment: name, replaces: options.replaces, hasDoorbell: options.doorbell != nil))
                state.current = (name, "me")
            }
        }

        func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)? {
            try state.withLock { (state) throws(ShmBusError) in
                if state.down { throw ShmBusError(.registryUnavailable, "down") }
                return state.current
            }
        }
    }

    struct Fixture {
        let writer: Lock<ChannelWriter>
        let registry = RecordingRegistry()
        let announced = Lock<[CommittedRange]>([])
        let registrar: Registrar

        init(persistent: Bool = false) throws {
            let writer = Lock(try ChannelWriter(channel: "registrar", capacity: 64 << 10))
            self.writer = writer
            let announced = self.announced
            registrar = Registrar(
                settings: .init(channel: "registrar", persistent: persistent, ttl: .seconds(30), readers: .ownerOnly, me: "me"), registry: registry,
                writer: writer, logger: Logger(label: "test"), announce: { range in announced.withLock { $0.append(range) } })
        }

        /// Appends a chunk, then collects garbage, queueing the rotation as publishing does.
        func rotate() throws {
            try writer.withLock { writer in
                let bytes = [UInt8](repeating: 1, count: 100)
                _ = try bytes.withUnsafeBytes { buffer throws(SegmentError) in try writer.append(buffer, key: "k") }
                registrar.enqueue(try writer.collectGarbage())
            }
        }

        var segmentNames: [String] { writer.withLock { $0.liveSegments.map(\.id.name) } }
    }

    @Test func generationsAreRegisteredInOrderEachReplacingTheLastAndAnnouncedWhole() async throws {
        let fixture = try Fixture()
        let first = fixture.writer.withLock { $0.current.id.name }
        try await fixture.registrar.registerFirst()
        fixture.registrar.start()
        for _ in 0..<3 { try fixture.rotate() }
        await fixture.registrar.flush()
        #expect(!fixture.registrar.isRotationPending)
        let registrations = fixture.registry.state.withLock { $0.registrations }
        #expect(registrations.count == 4)
        #expect(registrations.first == .init(segment: first, replaces: nil, hasDoorbell: true))
        for (previous, next) in zip(registrations, registrations.dropFirst()) {
            #expect(next.replaces == previous.segment, "each generation replaces the one before it")
        }
        // Each registered generation is announced whole: from the header to its end.
        let announced = fixture.announced.withLock { $0 }
        #expect(announced.map(\.generation) == [2, 3, 4])
        #expect(announced.allSatisfy { $0.startOffset == UInt64(SegmentLayout.headerSize) && $0.endOffset > $0.startOffset })
        // Old generations are retired once their successor is registered: the writer
        // keeps only the current one and the one it replaced.
        #expect(fixture.segmentNames.count <= 2)
        #expect(fixture.registrar.registered == registrations.last?.segment)
    }

    @Test func aRotationWhileTheRegistryIsDownStillSettlesAndTheCurrentSegmentIsRegisteredWhenItReturns() async throws {
        let fixture = try Fixture()
        try await fixture.registrar.registerFirst()
        fixture.registrar.start()
        fixture.registry.state.withLock { $0.down = true }
        fixture.registrar.registryChanged(owner: nil)
        try fixture.rotate()
        await fixture.registrar.flush()   // does not wait for a registry that is gone
        #expect(fixture.registrar.registered.isEmpty)
        #expect(fixture.registry.state.withLock { $0.registrations.count } == 1)

        // A new registry knows nothing: the current segment is registered afresh, not
        // as the replacement of a segment it never saw.
        fixture.registry.state.withLock {
            $0.down = false
            $0.current = nil
        }
        fixture.registrar.registryChanged(owner: ":1.99")
        let current = fixture.writer.withLock { $0.current.id.name }
        let deadline = ContinuousClock.now + .seconds(60)
        while fixture.registrar.registered != current, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let last = try #require(fixture.registry.state.withLock { $0.registrations.last })
        #expect(last == .init(segment: current, replaces: nil, hasDoorbell: true))
        #expect(fixture.registrar.registered == current)
    }

    @Test func aRegistryThatAlreadyHasTheCurrentSegmentIsNotAskedAgain() async throws {
        let fixture = try Fixture()
        try await fixture.registrar.registerFirst()
        fixture.registrar.start()
        // (A registry activated in place of a dying one may have carried out the call.)
        fixture.registrar.registryChanged(owner: ":1.50")
        // `registered` is cleared at once and set again once the registrar's task has
        // looked (and registered, had it found it necessary): wait for that, not for
        // 200 ms, which a loaded machine may not give the task.
        let current = fixture.writer.withLock { $0.current.id.name }
        let deadline = ContinuousClock.now + .seconds(60)
        while fixture.registrar.registered != current, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        await fixture.registrar.flush()
        #expect(fixture.registry.state.withLock { $0.registrations.count } == 1)
        #expect(fixture.registrar.registered == current)
    }

    @Test func stopSettlesWhatIsQueuedAndQueuesNothingMore() async throws {
        let fixture = try Fixture()
        try await fixture.registrar.registerFirst()
        // Not started: the queued rotation waits, and so does a flush.
        try fixture.rotate()
        #expect(fixture.registrar.isRotationPending)
        async let flushed: Void = fixture.registrar.flush()
        try await Task.sleep(for: .milliseconds(50))
        fixture.registrar.stop()
        await flushed
        #expect(!fixture.registrar.isRotationPending)
        let queued = try fixture.writer.withLock { writer in fixture.registrar.enqueue(try writer.collectGarbage()) }
        #expect(!queued, "a stopped registrar queues nothing; the publisher retires the old segment itself")
        await fixture.registrar.flush()
    }

    @Test func aRegistryThatRestartsWhileRotationsWaitGetsEveryGenerationInOrder() async throws {
        let fixture = try Fixture()
        try await fixture.registrar.registerFirst()
        let first = fixture.writer.withLock { $0.current.id.name }
        // The registry restarts (it knows nothing now), then two collections happen
        // before the registrar gets to run: its queue is [appeared, rotation, rotation].
        fixture.registry.state.withLock {
            $0.registrations = []
            $0.current = nil
        }
        fixture.registrar.registryChanged(owner: nil)
        fixture.registrar.registryChanged(owner: ":1.9")
        try fixture.rotate()
        try fixture.rotate()
        fixture.registrar.start()
        await fixture.registrar.flush()
        let registrations = fixture.registry.state.withLock { $0.registrations }
        // The oldest live segment first, then each generation replacing the one before:
        // no generation skipped, none refused as older than what the registry has.
        #expect(registrations.map(\.replaces) == [nil, registrations.first?.segment, registrations.dropFirst().first?.segment])
        #expect(registrations.first?.segment == first)
        #expect(registrations.count == 3)
        #expect(registrations.last?.segment == fixture.writer.withLock { $0.current.id.name })
    }
}
