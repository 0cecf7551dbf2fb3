import DBus
import Foundation
import SharedSegments
import ShmBus
import TestSupport
import Testing

/// Attributes end to end: set by a publisher, read by a subscriber, returned by
/// `LookupChunk` to this package's client, to busctl and to gdbus, and set and shown by
/// the command line.
@Suite struct ChunkAttributeTests {
    static let frame = {
        var attributes = ChunkAttributes(["content-type": .string("image/x-raw")])
        attributes.image = .init(width: 64, height: 48, stride: 256, pixelFormat: .abgr8888)
        attributes["org.example.exposure-us"] = .double(1250.5)
        return attributes
    }()

    @Test(.timeLimit(.minutes(5))) func aSubscriberAndLookupChunkSeeWhatThePublisherSaid() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "attr/frames", on: .address(fixture.address))
        let subscriber = try await Subscriber.open(channel: "attr/frames", on: .address(fixture.address), options: .init(start: .oldest))
        var tensor = ChunkAttributes()
        tensor.array = .init(elementType: .float32, shape: [3, 4], strides: [16, 4])
        try publisher.publish(key: "frame", length: 256 * 48, attributes: Self.frame) { $0.initializeMemory(as: UInt8.self, repeating: 7) }
        try publisher.publish([UInt8](repeating: 1, count: 48), key: "tensor", attributes: tensor)
        try publisher.publish([UInt8](repeating: 2, count: 10), key: "plain")
        var seen: [String: ChunkAttributes] = [:]
        for try await event in subscriber {
            guard case .chunk(let chunk) = event else { continue }
            seen[chunk.key] = chunk.attributes
            if seen.count == 3 { break }
        }
        #expect(seen["frame"] == Self.frame)
        #expect(seen["frame"]?.image?.extent == 47 * 256 + 64 * 4)
        #expect(seen["tensor"]?.array == .init(elementType: .float32, shape: [3, 4], strides: [16, 4]))
        #expect(seen["plain"]?.isEmpty == true)

        let client = try await fixture.client()
        let described = try await client.lookupChunk(channel: "attr/frames", key: "frame")
        #expect(described.length == 256 * 48 && described.sequence == 1 && described.timestamp > 0 && described.expiry == 0)
        // The bus keeps no order: the same entries, sorted by name.
        #expect(described.attributes.names == Self.frame.names.sorted())
        #expect(described.attributes.image == Self.frame.image && described.attributes.contentType == "image/x-raw")
        #expect(described.attributes["org.example.exposure-us"] == .double(1250.5))
        #expect(try await client.lookupChunk(channel: "attr/frames", key: "plain").attributes.isEmpty)
        let error = await #expect(throws: ShmBusError.self) { try await client.lookupChunk(channel: "attr/frames", key: "none") }
        #expect(error?.code == .notFound)
        subscriber.cancel()
        await publisher.close()
    }

    /// What the publisher's own checks refuse never reaches the segment.
    @Test func aPublishWithAttributesThatDoNotFitIsRefused() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "attr/refused", on: .address(fixture.address))
        var attributes = ChunkAttributes()
        attributes.array = .init(elementType: .float64, shape: [100])
        let error = #expect(throws: ShmBusError.self) { try publisher.publish([UInt8](repeating: 0, count: 799), attributes: attributes) }
        #expect(error?.code == .invalidArgument && "\(error!)".contains("spans 800 bytes"), "\(String(describing: error))")
        #expect(publisher.lastSequence == 0)
        try publisher.publish([UInt8](repeating: 0, count: 800), attributes: attributes)
        #expect(publisher.lastSequence == 1)
        await publisher.close()
    }

    /// `LookupChunk` through tools no one here wrote: the attributes arrive as the
    /// D-Bus types FORMAT.md's table names.
    @Test func busctlAndGdbusReadLookupChunk() async throws {
        let fixture = try await RegistryFixture()
        let publisher = try await Publisher.open(channel: "attr/interop", on: .address(fixture.address))
        try publisher.publish(key: "frame", length: 256 * 48, attributes: Self.frame) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        let (status, out, err) = try await BuiltProducts.run("busctl", [
            "--address=\(fixture.address)", "--json=short", "call", ShmBusProtocol.registryName, "/org/shmbus/Registry1", Registry1.name,
            "LookupChunk", "ss", "attr/interop", "frame",
        ])
        #expect(status == .exited(0), "\(err)")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(reply["type"] as? String == "sttta{sv}")
        let data = try #require(reply["data"] as? [Any])
        #expect((data[2] as? NSNumber)?.intValue == 256 * 48)
        let info = try #require(data[4] as? [String: [String: Any]])
        let attributes = try #require(info["attributes"]?["data"] as? [String: [String: Any]])
        #expect(attributes["width"]?["type"] as? String == "x" && (attributes["width"]?["data"] as? NSNumber)?.intValue == 64)
        #expect(attributes["pixel-format"]?["type"] as? String == "s" && attributes["pixel-format"]?["data"] as? String == "AB24")
        #expect(attributes["org.example.exposure-us"]?["type"] as? String == "d")

        let (gstatus, gout, gerr) = try await BuiltProducts.run("gdbus", [
            "call", "--address", fixture.address, "--dest", ShmBusProtocol.registryName, "--object-path", "/org/shmbus/Registry1",
            "--method", "\(Registry1.name).LookupChunk", "attr/interop", "frame",
        ])
        #expect(gstatus == .exited(0), "\(gerr)")
        #expect(gout.contains("'stride': <int64 256>") && gout.contains("'content-type': <'image/x-raw'>"), "\(gout)")
        await publisher.close()
    }

    /// The command line: `publish --attribute` sets them; `cat --info`, `subscribe
    /// --json` and `stat --json` show them; a misfit is refused before anything is
    /// registered.
    @Test(.timeLimit(.minutes(5))) func theCommandLineSetsAndShowsAttributes() async throws {
        let fixture = try await RegistryFixture()
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("attr-\(UInt32.random(in: 0...UInt32.max)).bin")
        try Data(repeating: 3, count: 24).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let (published, out, err) = try await fixture.run([
            "publish", "--channel", "attr/cli", "--key", "t", "--persistent", "--json", "--attribute", "dtype=float32",
            "--attribute", "shape:ints=2,3", "--attribute", "org.example.scale:float=0.5", "--attribute", "org.example.n:int=-4", input.path,
        ])
        #expect(published == .exited(0), "\(err)")
        let segment = try #require((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])?["segment"] as? String)
        let expected: [String: Any] = ["dtype": "float32", "shape": [2, 3], "org.example.scale": 0.5, "org.example.n": -4]

        let (_, info, infoErr) = try await fixture.run(["cat", "--channel", "attr/cli", "--key", "t", "--info", "--json"])
        let infoObject = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any], "\(infoErr)")
        #expect(try Self.canonical(infoObject["attributes"]) == Self.canonical(expected), "\(info)")
        #expect(infoObject["length"] as? Int == 24 && infoObject["segment"] as? String == segment)
        let (_, text, _) = try await fixture.run(["cat", "--channel", "attr/cli", "--key", "t", "--info"])
        #expect(text.contains("shape") && text.contains("[2, 3]"), "\(text)")

        let (_, line, lineErr) = try await fixture.run(["subscribe", "--channel", "attr/cli", "--from", "oldest", "--count", "1", "--json"])
        let lineObject = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(lineErr)")
        #expect(try Self.canonical(lineObject["attributes"]) == Self.canonical(expected), "\(line)")

        let (_, stat, statErr) = try await fixture.run(["stat", "--json", segment])
        let statObject = try #require(try JSONSerialization.jsonObject(with: Data(stat.utf8)) as? [String: Any], "\(statErr)")
        let chunks = try #require(statObject["Chunks"] as? [[String: Any]], "\(stat)")
        #expect(chunks.count == 1 && chunks[0]["key"] as? String == "t")
        #expect(try Self.canonical(chunks[0]["attributes"]) == Self.canonical(expected))

        let (refused, _, why) = try await fixture.run([
            "publish", "--channel", "attr/cli2", "--attribute", "dtype=float64", "--attribute", "shape:ints=4", input.path,
        ])
        #expect(refused == .exited(64) && why.contains("spans 32 bytes; the payload has 24"), "\(why)")
        let (badSyntax, _, _) = try await fixture.run(["publish", "--channel", "attr/cli2", "--attribute", "n:int=x", input.path])
        #expect(badSyntax != .exited(0))
        #expect(try await fixture.client().channel("attr/cli2") == nil, "nothing was registered")
    }

    /// A JSON value as sorted-key text, to compare parsed objects.
    static func canonical(_ value: Any?) throws -> String {
        let object = try #require(value, "no value")
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }
}
