import Locking
import Logging
import SharedSegments
@testable import ShmBus
import Testing

/// Where a subscriber finds the next segment, without a bus: sources that hold real
/// segments and answer as the registry and a publisher would.
@Suite struct SegmentLocatorTests {
    final class Sources: SegmentSources {
        struct State {
            /// Segments the registry has, by name.
            var registry: [String: UnixFileDescriptor] = [:]
            /// Segments the publisher serves, by name; `sentInstead` maps a name to
            /// another segment a hostile publisher sends.
            var publisher: [String: UnixFileDescriptor] = [:]
            var sentInstead: [String: UnixFileDescriptor] = [:]
            var current: String?
            var publisherCurrent: String?
            var registryDown = false
            var calls: [String] = []
        }

        let state = Lock(State())

        func currentSegment(of channel: String) async throws(ShmBusError) -> (segment: String, owner: String)? {
            try state.withLock { (state) throws(ShmBusError) in
                state.calls.append("current")
                if state.registryDown { throw ShmBusError(.registryUnavailable, "down") }
                return state.current.map { ($0, ":1.7") }
            }
        }

        func openSegment(_ name: String) async throws(ShmBusError) -> (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary) {
            try state.withLock { (state) throws(ShmBusError) in
                state.calls.append("registry \(name)")
                if state.registryDown { throw ShmBusError(.registryUnavailable, "down") }
                guard let fd = state.registry[name] else { throw .notFound("no segment") }
                return (fd, .init())
            }
        }

        func openSegment(_ name: String, fromPublisher owner: String) async throws(ShmBusError) -> UnixFileDescriptor {
            try state.withLock { (state) throws(ShmBusError) in
                state.calls.append("publisher \(name)")
                if let other = state.sentInstead[name] { return other }
                guard let fd = state.publisher[name] else { throw .notFound("not served") }
                return fd
            }
        }

        func currentSegment(ofPublisher owner: String) async throws(ShmBusError) -> String {
            try state.withLock { (state) throws(ShmBusError) in
                guard let current = state.publisherCurrent else { throw ShmBusError(.bus, "no answer") }
                return current
            }
        }

        /// These generations do not reuse memory: a lease is never asked for.
        func lease(_ page: UnixFileDescriptor, atPublisher owner: String) async throws(ShmBusError) {
            state.withLock { $0.calls.append("lease \(owner)") }
            throw .invalidArgument("this publisher does not reuse memory")
        }
    }

    /// A channel collected `count` times: its generations in order.
    static func generations(_ count: Int) throws -> [SegmentWriter] {
        let writer = try ChannelWriter(channel: "locate", capacity: 64 << 10)
        var out = [writer.current]
        for _ in 1..<count {
            _ = try [UInt8](repeating: 2, count: 10).withUnsafeBytes { buffer throws(SegmentError) in try writer.append(buffer) }
            out.append(try writer.collectGarbage().new)
        }
        return out
    }

    static func locator(_ sources: Sources) -> SegmentLocator {
        SegmentLocator(channel: "locate", sources: sources, logger: Logger(label: "test"), lease: SubscriberLease(anchor: nil))
    }

    @Test func theRegistryIsAskedFirst() async throws {
        let g = try Self.generations(2)
        let sources = Sources()
        sources.state.withLock { $0.registry[g[1].id.name] = g[1].fileDescriptor }
        let found = try #require(try await Self.locator(sources).successor(g[1].id, of: g[0].id.name, generation: 1, owner: { ":1.7" }))
        #expect(found.reader.name == g[1].id.name)
        #expect(sources.state.withLock { $0.calls } == ["registry \(g[1].id.name)"])
    }

    @Test func aSuccessorTheRegistryLacksComesFromItsPublisher() async throws {
        let g = try Self.generations(2)
        let sources = Sources()
        sources.state.withLock {
            $0.publisher[g[1].id.name] = g[1].fileDescriptor
            $0.current = g[0].id.name
        }
        let found = try #require(try await Self.locator(sources).successor(g[1].id, of: g[0].id.name, generation: 1, owner: { ":1.7" }))
        #expect(found.reader.name == g[1].id.name)
        #expect(found.doorbell == nil, "a publisher sends the segment only")
    }

    @Test func aPublisherCannotLeadBackwardsOrElsewhere() async throws {
        // Asked for generation 3, the publisher sends generation 1 (a loop), then a
        // segment of another name; both are refused, and the channel's current segment
        // (from the registry) is where the reader goes.
        let g = try Self.generations(4)
        let sources = Sources()
        sources.state.withLock {
            $0.sentInstead[g[2].id.name] = g[0].fileDescriptor
            $0.registry[g[3].id.name] = g[3].fileDescriptor
            $0.current = g[3].id.name
        }
        let locator = Self.locator(sources)
        #expect(await { if case .failed = await locator.openFromOwner(":1.7", g[2].id.name, after: 2) { true } else { false } }())
        let found = try #require(try await locator.successor(g[2].id, of: g[1].id.name, generation: 2, owner: { ":1.7" }))
        #expect(found.reader.name == g[3].id.name, "passed over for the current segment; the cursor reports the gap")
    }

    @Test func withTheRegistryDownTheReaderFollowsThroughThePublisherOrJumpsToItsCurrentSegment() async throws {
        let g = try Self.generations(3)
        let sources = Sources()
        sources.state.withLock {
            $0.registryDown = true
            $0.publisher[g[1].id.name] = g[1].fileDescriptor
        }
        let locator = Self.locator(sources)
        let followed = try #require(try await locator.successor(g[1].id, of: g[0].id.name, generation: 1, owner: { ":1.7" }))
        #expect(followed.reader.name == g[1].id.name)
        // Two behind: the publisher no longer serves the successor, only its current.
        sources.state.withLock {
            $0.publisher = [g[2].id.name: g[2].fileDescriptor]
            $0.publisherCurrent = g[2].id.name
        }
        let jumped = try #require(try await locator.successor(g[1].id, of: g[0].id.name, generation: 1, owner: { ":1.7" }))
        #expect(jumped.reader.name == g[2].id.name)
    }

    @Test func aSuccessorThatLeftWithItsPublisherEndsTheSearch() async throws {
        // The publisher collected, retired the old segment and was killed: its
        // non-persistent segments left the registry with it, so nobody has the
        // successor, and waiting would only delay the departure being reported.
        let g = try Self.generations(2)
        let sources = Sources()
        let found = try await Self.locator(sources).successor(
            g[1].id, of: g[0].id.name, generation: 1, owner: { ":1.7" }, ownerGone: { true })
        #expect(found == nil)
    }
}
