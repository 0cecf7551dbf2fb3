import Logging
import Glibc
import Locking
import SharedSegments
@testable import ShmBus
import ShmBusPolicy
import TestSupport
import Testing

/// What `Publisher1` hands out, without a bus.
@Suite struct PublisherObjectTests {
    @Test func itServesItsLiveSegmentsReadOnlyAndNothingElse() async throws {
        let writer = Lock(try ChannelWriter(channel: "served", capacity: 64 << 10))
        let connection = try await TestBus.connect()
        let object = PublisherObject(
            channel: "served", writer: writer, peers: PeerDirectory(connection: connection),
            owner: ChannelOwner(uid: getuid()), readers: .ownerOnly,
            leases: PublisherLeases(writer: writer, connection: connection, logger: Logger(label: "test")))
        let (first, rotation) = try writer.withLock { writer in (writer.current.id.name, try writer.collectGarbage()) }
        // Until retired, the replaced generation is still served; both read-only.
        for name in [first, rotation.new.id.name] {
            let fd = try PublisherObject.readOnlyDescriptor(of: name, in: writer)
            #expect(fcntl(fd.rawValue, F_GETFL) & O_ACCMODE == O_RDONLY)
            #expect(try SegmentReader(fd: fd).name == name)
        }
        _ = writer.withLock { $0.retire(segment: rotation.old.id) }
        #expect(throws: ShmBusError.self) { try PublisherObject.readOnlyDescriptor(of: first, in: writer) }
        #expect(throws: ShmBusError.self) { try PublisherObject.readOnlyDescriptor(of: "00000000000000000000000000000000", in: writer) }
        do {
            _ = try PublisherObject.readOnlyDescriptor(of: first, in: writer)
        } catch {
            #expect(error.code == .notFound && error.dbusName == "org.shmbus.Error.NotFound")
        }
        #expect(object.channels == ["served"])
        #expect(object.currentSegment == rotation.new.id.name)
    }
}
