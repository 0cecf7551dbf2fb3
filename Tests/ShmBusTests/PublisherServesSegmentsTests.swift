import DBus
import Foundation
import Glibc
import Locking
import ShmBus
import TestSupport
import Testing

/// `org.shmbus.Publisher1.OpenSegment`: a publisher hands out its own segments that
/// readers may still need, so that subscribers follow garbage collection while the
/// registry is gone, and any D-Bus binding can open them.
@Suite struct PublisherServesSegmentsTests {
    static func publish(_ publisher: Publisher, _ count: Int) throws {
        for _ in 0..<count {
            let next = publisher.lastSequence + 1
            try publisher.publish(length: 1024) { TestPayload.fill($0, sequence: next) }
        }
    }

    @Test(.timeLimit(.minutes(5))) func subscribersFollowCollectionsWhileTheRegistryIsGone() async throws {
        let fixture = try await RegistryFixture()
        let watcher = try await fixture.connect()
        let publisher = try await fixture.smallSegmentPublisher(channel: "unregistered")
        try Self.publish(publisher, 10)
        // Two subscribers from the first segment: one reads along, one waits.
        let keeping = try await Subscriber.open(channel: "unregistered", on: .address(fixture.address), options: .init(start: .oldest))
        let lagging = try await Subscriber.open(channel: "unregistered", on: .address(fixture.address), options: .init(start: .oldest))
        let audit = Lock(StreamAudit(from: 1))
        let reading = Task {
            for try await event in keeping { audit.withLock { $0.record(event) } }
        }
        #expect(await Reliability.waitUntil(.seconds(30)) { audit.withLock { $0.delivered } == 10 } != nil)

        // The registry goes away for good: nobody can open a segment through it.
        let daemon = try #require(fixture.daemon)
        daemon.signal(SIGKILL)
        daemon.waitUntilExit()
        #expect(await Reliability.waitUntil(.seconds(30)) { (try? await watcher.nameOwner(of: ShmBusProtocol.registryName)) == .some(nil) } != nil)

        // Three collections, each retiring the segment the reading subscriber is on; it
        // catches up in between, following each successor through the publisher.
        var segments = [publisher.currentSegment]
        for _ in 0..<3 {
            try publisher.collectGarbage()
            segments.append(publisher.currentSegment)
            try Self.publish(publisher, 40)
            let last = publisher.lastSequence
            let caughtUp = await Reliability.waitUntil(.seconds(60)) { audit.withLock { $0.next ?? 0 } > last }
            #expect(caughtUp != nil, "the subscriber reached \(String(describing: audit.withLock { $0.next })) of \(last + 1)")
        }
        await publisher.flush()
        keeping.cancel()
        _ = await reading.result
        let kept = audit.withLock { $0 }
        #expect(Set(segments).count == 4, "\(segments)")
        #expect(kept.problems.isEmpty, "\(kept.problems.prefix(5))")
        #expect(kept.delivered == 130 && kept.missed == 0 && kept.gaps.isEmpty, "nothing skipped: \(kept.delivered) delivered, gaps \(kept.gaps)")

        // The waiting one starts now, on the first segment: its successor is retired
        // too, so it moves to the publisher's current segment and reports what it passed
        // over as one gap of exact size.
        let last = publisher.lastSequence
        let lagged = Lock(StreamAudit(from: 1))
        let catchingUp = Task {
            for try await event in lagging {
                lagged.withLock { $0.record(event) }
                if lagged.withLock({ $0.next ?? 0 }) > last { break }
            }
        }
        let caughtUp = await Reliability.waitUntil(.seconds(60)) { lagged.withLock { $0.next ?? 0 } > last }
        lagging.cancel()
        _ = await catchingUp.result
        let seen = lagged.withLock { $0 }
        #expect(caughtUp != nil, "the lagging subscriber reached \(String(describing: seen.next)) of \(last + 1)")
        #expect(seen.problems.isEmpty, "\(seen.problems.prefix(5))")
        #expect(seen.gaps.count == 1 && seen.missed > 0, "one jump to the current segment: \(seen.gaps)")
        #expect(UInt64(seen.delivered) + seen.missed == last, "every sequence delivered or reported missing")
        #expect(try await watcher.nameOwner(of: ShmBusProtocol.registryName) == nil, "and the registry never came back")
        await publisher.close()
    }

    @Test func pythonOpensThePublishersSegmentReadOnlyAndSealed() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "served", on: .address(fixture.address))
        try publisher.publish(Array("hello from the publisher".utf8))
        // F_SEAL_SEAL 1, SHRINK 2, GROW 4, FUTURE_WRITE 16; the header starts with its magic.
        let script = """
            import dbus, fcntl, mmap, os, sys
            bus = dbus.bus.BusConnection(sys.argv[1])
            publisher = dbus.Interface(bus.get_object(sys.argv[2], "/org/shmbus/Publisher1"), "org.shmbus.Publisher1")
            fd = publisher.OpenSegment(sys.argv[3]).take()
            print("seals", fcntl.fcntl(fd, 1034) & (1 | 2 | 4 | 16))
            print("mode", os.fstat(fd).st_size, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY)
            try:
                os.write(fd, b"x")
            except OSError as e:
                print("write", e.errno == 9)
            m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
            print("found", m.find(b"hello from the publisher") > 0)
            try:
                publisher.OpenSegment("0" * 32)
            except dbus.DBusException as e:
                print(e.get_dbus_name())
            """
        let (status, out, err) = try await BuiltProducts.run(
            RegistryInteropTests.python, ["-c", script, fixture.address, publisher.connection.uniqueName, publisher.currentSegment])
        #expect(status == .exited(0), "\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines == ["seals 23", "mode \(64 << 20) True", "write True", "found True", "org.shmbus.Error.NotFound"], "\(out)\(err)")
        await publisher.close()
    }
}
