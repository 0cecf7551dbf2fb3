import Foundation
import NATS
import TestSupport
import Testing

/// The Swift layer over NATS.c against a real nats-server with JetStream, alone on a
/// random loopback port with a store of its own. NATS.c's calls block, so each test
/// makes them on a thread of its own (`onOwnThread`), as the bridge does.
@Suite("NATS client")
struct NATSClientTests {
    static func connect(_ server: NATSServer) throws -> NATSConnection {
        var options = NATSConnection.Options(servers: [server.clientURL])
        options.name = "shmbus-test"
        return try NATSConnection(options: options)
    }

    static func stream(_ name: String) -> StreamConfiguration {
        StreamConfiguration(name: name, subjects: ["t.\(name).>"])
    }

    @Test("publish with headers and Nats-Msg-Id: stored once, read back byte for byte by subject")
    func publishAndReadBack() async throws {
        let server = try await NATSServer(name: "publish")
        let url = server.clientURL
        try await onOwnThread {
            let nats = try NATSConnection(options: .init(servers: [url]))
            #expect(nats.maxPayload == 8 << 20)
            try nats.addOrUpdateStream(Self.stream("P"))
            let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let headers = [(name: "Shmbus-Sequence", value: "42"), (name: "Shmbus-Key", value: "a%2Eb")]
            let first = try payload.withUnsafeBytes {
                try nats.publish(subject: "t.P.one", headers: headers, data: $0, messageID: "m-1", expectedStream: "P")
            }
            #expect(first.stream == "P" && first.sequence == 1 && !first.duplicate)
            let again = try payload.withUnsafeBytes { try nats.publish(subject: "t.P.one", headers: headers, data: $0, messageID: "m-1") }
            #expect(again.duplicate)
            #expect(again.sequence == 1)
            _ = try [UInt8]().withUnsafeBytes { try nats.publish(subject: "t.P.two", headers: [], data: $0, messageID: "m-2") }
            #expect(try nats.streamInfo("P").messages == 2)

            let stored = try #require(try nats.lastMessage(stream: "P", subject: "t.P.one"))
            #expect(Array(stored.data) == payload)
            #expect(stored.header("Shmbus-Sequence") == "42")
            #expect(stored.header("Shmbus-Key") == "a%2Eb")
            #expect(stored.header("Nats-Msg-Id") == "m-1")
            #expect(stored.streamSequence == 1)
            let newest = try #require(try nats.lastMessage(stream: "P", subject: "t.P.*"))
            #expect(newest.subject == "t.P.two")
            #expect(newest.data.isEmpty)
            #expect(try nats.lastMessage(stream: "P", subject: "t.P.none") == nil)
            #expect(try nats.message(stream: "P", sequence: 2)?.subject == "t.P.two")
        }
    }

    @Test("a durable pull consumer keeps its acknowledged position across subscriptions (AckPolicy all)")
    func durableConsumerContinues() async throws {
        let server = try await NATSServer(name: "durable")
        let url = server.clientURL
        try await onOwnThread {
            let nats = try NATSConnection(options: .init(servers: [url]))
            try nats.addOrUpdateStream(Self.stream("D"))
            for index in 1...5 {
                _ = try Array("m\(index)".utf8).withUnsafeBytes { try nats.publish(subject: "t.D.x", headers: [], data: $0) }
            }
            var consumer = ConsumerConfiguration(durable: "reader", filterSubject: "t.D.>")
            consumer.ackPolicy = .all
            do {
                let subscription = try nats.pullSubscribe(stream: "D", consumer: consumer)
                let messages = try subscription.fetch(batch: 3, timeout: .seconds(10))
                #expect(messages.map { String(decoding: $0.data, as: UTF8.self) } == ["m1", "m2", "m3"])
                #expect(messages.last?.deliveryMetadata?.consumerSequence == 3)
                // Acknowledging the third acknowledges the first two as well.
                try messages[2].acknowledge()
            }
            let again = try nats.pullSubscribe(stream: "D", consumer: consumer)
            let rest = try again.fetch(batch: 10, timeout: .seconds(10))
            #expect(rest.map { String(decoding: $0.data, as: UTF8.self) } == ["m4", "m5"])
            #expect(rest.first?.deliveryMetadata?.deliveries == 1)
            try rest.last?.acknowledge()
            #expect(try again.fetch(batch: 10, timeout: .milliseconds(300)).isEmpty)
        }
    }

    @Test("DeliverLastPerSubject gives a late consumer the newest message of each subject, then new ones")
    func lastPerSubject() async throws {
        let server = try await NATSServer(name: "last")
        let url = server.clientURL
        try await onOwnThread {
            let nats = try NATSConnection(options: .init(servers: [url]))
            try nats.addOrUpdateStream(Self.stream("L"))
            for (subject, value) in [("t.L.a", "a1"), ("t.L.b", "b1"), ("t.L.a", "a2")] {
                _ = try Array(value.utf8).withUnsafeBytes { try nats.publish(subject: subject, headers: [], data: $0) }
            }
            var consumer = ConsumerConfiguration(durable: "late", filterSubject: "t.L.>")
            consumer.deliverPolicy = .lastPerSubject
            let subscription = try nats.pullSubscribe(stream: "L", consumer: consumer)
            let first = try subscription.fetch(batch: 10, timeout: .seconds(10))
            #expect(first.map { String(decoding: $0.data, as: UTF8.self) } == ["b1", "a2"])
            for message in first { try message.acknowledge() }
            _ = try Array("b2".utf8).withUnsafeBytes { try nats.publish(subject: "t.L.b", headers: [], data: $0) }
            let next = try subscription.fetch(batch: 10, timeout: .seconds(10))
            #expect(next.map { String(decoding: $0.data, as: UTF8.self) } == ["b2"])
        }
    }

    @Test("failures are typed: no server, no stream, no message")
    func typedErrors() async throws {
        let server = try await NATSServer(name: "errors")
        let url = server.clientURL
        try await onOwnThread {
            let noServer = #expect(throws: NATSError.self) {
                var options = NATSConnection.Options(servers: ["nats://127.0.0.1:1"])
                options.connectTimeout = .milliseconds(500)
                _ = try NATSConnection(options: options)
            }
            #expect(noServer?.context.contains("nats://127.0.0.1:1") == true)
            #expect(noServer?.status != 0)

            let nats = try NATSConnection(options: .init(servers: [url]))
            let noStream = #expect(throws: NATSError.self) { _ = try nats.streamInfo("NOPE") }
            #expect(noStream?.jetStreamCode == 10059)
            #expect(noStream?.description.contains("NOPE") == true)
            nats.close()
            let closed = #expect(throws: NATSError.self) { try nats.addOrUpdateStream(Self.stream("C")) }
            #expect(closed?.context.contains("'C'") == true)
        }
    }
}
