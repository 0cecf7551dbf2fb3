import DBus
import Foundation
import ShmBusProtocol
import ShmBusTesting
import ThumbnailerProtocol
import TestSupport
import Testing

/// The contract module is generated from dbus/*.xml: the committed files must be
/// what the generator makes of the XML now, and the declarations they carry must be
/// the XML's, member for member.
@Suite struct ContractGenerationTests {
    static let files = ["org.shmbus.Registry1.xml", "org.shmbus.Publisher1.xml", "org.shmbus.Keeper1.xml"]

    @Test func theCommittedContractIsWhatTheGeneratorMakesOfTheXML() async throws {
        let root = BuiltProducts.repositoryRoot
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-codegen-\(getpid())")
        defer { try? FileManager.default.removeItem(at: output) }
        let inputs = Self.files.map { root.appendingPathComponent("dbus/\($0)").path }
        let (status, _, err) = try await BuiltProducts.run(BuiltProducts.path("shmbus-codegen"), ["--output", output.path] + inputs)
        #expect(status == .exited(0), "\(err)")
        let committed = root.appendingPathComponent("Sources/ShmBusProtocol/Generated")
        let fresh = try FileManager.default.contentsOfDirectory(atPath: output.path).sorted()
        #expect(fresh == ["Channel1.swift", "Keeper1.swift", "Publisher1.swift", "Registry1.swift", "Segment1.swift"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: committed.path).sorted() == fresh, "no stale generated file")
        for name in fresh {
            let now = try String(contentsOf: output.appendingPathComponent(name), encoding: .utf8)
            let then = try String(contentsOf: committed.appendingPathComponent(name), encoding: .utf8)
            #expect(now == then, "Sources/ShmBusProtocol/Generated/\(name) is stale: run `make generate`")
        }
    }

    /// The contracts that take blobs — the blob test service's (dbus/testing/) and the
    /// example thumbnailer's: a blob argument by its signature alone becomes `Blob`, the
    /// file imports ShmBus for it, and the committed file is what the generator makes.
    @Test(arguments: [
        ("dbus/testing/org.shmbus.testing.BlobEcho1.xml", "Sources/ShmBusTesting/Generated", "BlobEcho1.swift",
         "func echo(blob: Blob, call: DBusMethodCall) async throws -> Blob"),
        ("examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.xml", "examples/thumbnailer/Protocol", "Thumbnailer1.swift",
         "func thumbnail(image: Blob, maxSide: UInt32, call: DBusMethodCall) async throws -> Blob"),
    ])
    func theCommittedBlobContractIsWhatTheGeneratorMakesOfItsXML(xml: String, directory: String, file: String, requirement: String) async throws {
        let root = BuiltProducts.repositoryRoot
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-codegen-blob-\(getpid())-\(file)")
        defer { try? FileManager.default.removeItem(at: output) }
        let input = root.appendingPathComponent(xml).path
        let (status, _, err) = try await BuiltProducts.run(BuiltProducts.path("shmbus-codegen"), ["--output", output.path, input])
        #expect(status == .exited(0), "\(err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path) == [file])
        let now = try String(contentsOf: output.appendingPathComponent(file), encoding: .utf8)
        let then = try String(contentsOf: root.appendingPathComponent(directory).appendingPathComponent(file), encoding: .utf8)
        #expect(now == then, "\(directory)/\(file) is stale: run `make generate`")
        #expect(now.contains("import ShmBus\n") && now.contains(requirement))
    }

    @Test func theBlobContractsDeclareTheirXML() throws {
        let root = BuiltProducts.repositoryRoot
        for (xml, declaration) in [
            ("dbus/testing/org.shmbus.testing.BlobEcho1.xml", BlobEcho1.declaration),
            ("examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.xml", Thumbnailer1.declaration),
        ] {
            let text = try String(contentsOf: root.appendingPathComponent(xml), encoding: .utf8)
            let parsed = try #require(try DBusIntrospection(xml: text).interfaces.first)
            #expect(declaration.introspectionXML() == parsed.introspectionXML(), "\(xml)")
        }
    }

    @Test func theGeneratedDeclarationsAreTheXMLs() throws {
        let root = BuiltProducts.repositoryRoot
        var parsed: [String: DBusInterface] = [:]
        for file in Self.files {
            let xml = try String(contentsOf: root.appendingPathComponent("dbus/\(file)"), encoding: .utf8)
            for interface in try DBusIntrospection(xml: xml).interfaces { parsed[interface.name] = interface }
        }
        let generated = [Registry1.declaration, Channel1.declaration, Segment1.declaration, Publisher1.declaration, Keeper1.declaration]
        #expect(Set(parsed.keys) == Set(generated.map(\.name)))
        for declaration in generated {
            let xml = try #require(parsed[declaration.name])
            #expect(declaration.introspectionXML() == xml.introspectionXML(), "\(declaration.name)")
        }
    }

    @Test func everyAnnotatedSwiftTypeHasTheDeclaredType() {
        let checks = Registry1.annotatedTypes + Channel1.annotatedTypes + Segment1.annotatedTypes + Publisher1.annotatedTypes
            + Keeper1.annotatedTypes
        #expect(checks.count >= 6)
        for check in checks {
            #expect(check.swift.signature == check.declared.rawValue, "\(check.member)")
        }
    }

    @Test func typedOptionsRejectUnknownKeysAndIllTypedValuesAndInfoIgnoresNewKeys() throws {
        let good = try Registry1.RegisterOptions(dictionary: ["persistent": DBusVariant(true), "ttl": DBusVariant(UInt64(5))])
        #expect(good.persistent == true && good.ttl == 5 && good.replaces == nil)
        #expect(throws: DBusError.self) { try Registry1.RegisterOptions(dictionary: ["persistant": DBusVariant(true)]) }
        #expect(throws: DBusError.self) { try Registry1.RegisterOptions(dictionary: ["ttl": DBusVariant("5")]) }
        let info = try Registry1.SegmentInfoDictionary(dictionary: ["channel": DBusVariant("c"), "added_later": DBusVariant(UInt32(1))])
        #expect(info.channel == "c")
        #expect(throws: DBusError.self) { try Registry1.SegmentInfoDictionary(dictionary: ["generation": DBusVariant("1")]) }
        // Round trip through the wire form.
        let again = try Registry1.RegisterOptions(dbusValue: good.dbusValue)
        #expect(again.persistent == true && again.ttl == 5)
    }

    @Test func signalsRefuseAMessageOfAnotherSignature() throws {
        let wrong = try DBusMessage.signal(
            path: ShmBusProtocol.publisherPath, interface: Publisher1.name, member: "Committed", body: [.string("c")])
        #expect(throws: DBusError.self) { try Publisher1.Committed(message: wrong) }
        let right = Publisher1.Committed(
            channel: "c", segment: "s", generation: 1, startOffset: 2, endOffset: 3, firstSequence: 4, lastSequence: 5)
        let message = try DBusMessage.signal(path: ShmBusProtocol.publisherPath, interface: Publisher1.name, member: "Committed", body: right.body)
        let decoded = try Publisher1.Committed(message: message)
        #expect(decoded.lastSequence == 5 && decoded.channel == "c")
    }
}
