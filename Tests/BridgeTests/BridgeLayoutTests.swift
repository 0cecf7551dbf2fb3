import Foundation
import NATS
import ShmBusBridge
import TestSupport
import Testing

/// docs/BRIDGE.md's subjects and headers: the encoding as the document states it, and
/// messages that break the layout refused with the reason (they are untrusted: anyone
/// who may publish on the subjects can send them).
@Suite("Bridge layout")
struct BridgeLayoutTests {
    @Test("token encoding keeps A-Z a-z 0-9 - _ and writes every other byte as %XX; the empty key is %")
    func tokens() throws {
        #expect(SubjectLayout.encode("a.b c*>/é%") == "a%2Eb%20c%2A%3E%2F%C3%A9%25")
        #expect(SubjectLayout.encode("Plain-Key_9") == "Plain-Key_9")
        #expect(SubjectLayout.keyToken("") == "%")
        #expect(SubjectLayout.key(fromToken: "%") == "")
        #expect(SubjectLayout.key(fromToken: "a%2Eb%20c%2A%3E%2F%C3%A9%25") == "a.b c*>/é%")
        // Only what encode makes decodes: one token per key.
        for bad in ["%2e", "%41", "%4", "a%", "%%", "", "%FF"] {
            #expect(SubjectLayout.key(fromToken: bad) == nil, "\(bad)")
        }
    }

    @Test("subjects: shmbus.<stream>.<key>.<part>.<channel components>, and the filters of BRIDGE.md's table")
    func subjects() throws {
        let layout = try SubjectLayout(stream: "S")
        #expect(layout.subject(channel: "models/v1.2", key: "latest", part: 3) == "shmbus.S.latest.3.models.v1%2E2")
        #expect(layout.subject(channel: "camera/0", key: "", part: 1) == "shmbus.S.%.1.camera.0")
        #expect(layout.filter(channel: "camera/0") == "shmbus.S.*.*.camera.0")
        #expect(layout.filter(pattern: "camera/") == "shmbus.S.*.*.camera.>")
        #expect(layout.streamSubjects == "shmbus.S.>")
        #expect(layout.channel(ofSubject: "shmbus.S.latest.3.models.v1%2E2") == "models/v1.2")
        for bad in ["shmbus.T.k.1.a", "shmbus.S.k.1", "shmbus.S.k.1.a..b", "shmbus.S.k.1.a%2F", "other.S.k.1.a", "shmbus.S.k.1.%2E%2E"] {
            #expect(layout.channel(ofSubject: bad) == nil, "\(bad)")
        }
        let durable = layout.durableName(bridge: "b", pattern: "camera/")
        #expect(durable.hasPrefix("b-") && durable.count == 18)
        #expect(durable == layout.durableName(bridge: "b", pattern: "camera/"))
        #expect(durable != layout.durableName(bridge: "b", pattern: "camera/0"))
        #expect(throws: BridgeError.self) { try SubjectLayout(stream: "a.b") }
        #expect(throws: BridgeError.self) { try SubjectLayout(stream: "") }
        #expect(throws: BridgeError.self) { try SubjectLayout(stream: String(repeating: "x", count: 33)) }
    }

    /// A part's headers as the exporter writes them, then changed by `edit`, published
    /// on `subject` to a real server and read back as the importer reads it.
    static func parse(
        _ nats: NATSConnection, _ layout: SubjectLayout, subject: String? = nil, data: [UInt8] = [1, 2, 3],
        _ edit: (inout [String: String]) -> Void = { _ in }
    ) throws -> ChunkPart {
        let part = ChunkPart(
            channel: "cam/0", key: "k.1", sequence: 7, timestamp: 1_767_225_600_000_000_000, expiry: 0, part: 2, parts: 2, offset: 5,
            length: 8, digest: Array(repeating: 0xAB, count: 32))
        var headers = Dictionary(uniqueKeysWithValues: part.headers.map { ($0.name, $0.value) })
        edit(&headers)
        let target = subject ?? layout.subject(channel: part.channel, key: part.key, part: part.part)
        _ = try data.withUnsafeBytes {
            try nats.publish(subject: target, headers: headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, data: $0)
        }
        guard let message = try nats.lastMessage(stream: layout.stream, subject: target) else { throw TestFailure("not stored") }
        return try ChunkPart(message: message, layout: layout)
    }

    @Test("a part's headers round-trip, and each broken one is refused with its reason")
    func hostileHeaders() async throws {
        let server = try await NATSServer(name: "layout")
        let url = server.clientURL
        try await onOwnThread {
            let nats = try NATSConnection(options: .init(servers: [url]))
            let layout = try SubjectLayout(stream: "H")
            try nats.addOrUpdateStream(StreamConfiguration(name: "H", subjects: [layout.streamSubjects]))
            let good = try Self.parse(nats, layout)
            #expect(good.channel == "cam/0" && good.key == "k.1" && good.sequence == 7 && good.part == 2 && good.offset == 5)
            #expect(good.digest == Array(repeating: 0xAB, count: 32))

            let cases: [(String, String?, [UInt8], (inout [String: String]) -> Void)] = [
                ("decimal", nil, [1, 2, 3], { $0["Shmbus-Offset"] = "+5" }),
                ("decimal", nil, [1, 2, 3], { $0["Shmbus-Offset"] = "05" }),
                ("decimal", nil, [1, 2, 3], { $0["Shmbus-Sequence"] = "99999999999999999999" }),
                ("no Shmbus-Length", nil, [1, 2, 3], { $0["Shmbus-Length"] = nil }),
                ("part 3 of 2", nil, [1, 2, 3], { $0["Shmbus-Part"] = "3" }),
                ("pass the length", nil, [1, 2, 3, 4], { _ in }),
                ("ends at", nil, [1, 2], { _ in }),
                ("Shmbus-Channel", nil, [1, 2, 3], { $0["Shmbus-Channel"] = "cam/1" }),
                ("Shmbus-Key", nil, [1, 2, 3], { $0["Shmbus-Key"] = "k%2E2" }),
                ("subject's part", "shmbus.H.k%2E1.1.cam.0", [1, 2, 3], { _ in }),
                ("not a chunk subject", "shmbus.H.k%2E1.2.cam.%2E%2E", [1, 2, 3], { _ in }),
                ("Shmbus-Digest", nil, [1, 2, 3], { $0["Shmbus-Digest"] = "sha-256=" + String(repeating: "AB", count: 32) }),
                ("Shmbus-Digest", nil, [1, 2, 3], { $0["Shmbus-Digest"] = "md5=00" }),
                ("no Shmbus-Digest", nil, [1, 2, 3], { $0["Shmbus-Digest"] = nil }),
                ("part 1", nil, [1, 2, 3], { $0["Shmbus-Attributes"] = "AAAAAAAAAAA=" }),
            ]
            for (reason, subject, data, edit) in cases {
                let error = #expect(throws: BridgeError.self) { _ = try Self.parse(nats, layout, subject: subject, data: data, edit) }
                #expect(error?.description.contains(reason) == true, "wanted '\(reason)', got \(error.map { "\($0)" } ?? "nothing")")
            }
        }
    }
}
