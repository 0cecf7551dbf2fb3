import DBus
import Foundation
import Glibc
import SharedSegments
import ShmBus
import ShmBusSystem
import ShmBusTesting
import TestSupport
import Testing
import ThumbnailerProtocol

/// The example thumbnailer (examples/thumbnailer) as its users meet it: started by D-Bus
/// activation from its activation file, introspected with gdbus, called with images of
/// 4 KiB (inline), 64 MiB and 300 MiB (memfds; the last is more than `ay` can carry),
/// every pixel of each thumbnail checked against the rule its XML states.
@Suite struct ThumbnailerTests {
    /// A private bus whose service directory holds the activation file as installed: its
    /// `@THUMBNAILER_BIN@` replaced by the built service.
    static func activatingBus() throws -> PrivateBus {
        let services = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-thumbnailer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: services, withIntermediateDirectories: true)
        let template = try String(
            contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.service"),
            encoding: .utf8)
        try #require(template.contains("@THUMBNAILER_BIN@"))
        try template.replacingOccurrences(of: "@THUMBNAILER_BIN@", with: BuiltProducts.path("thumbnailer-service"))
            .write(to: services.appendingPathComponent("org.shmbus.examples.Thumbnailer1.service"), atomically: true, encoding: .utf8)
        return try PrivateBus(serviceDirectories: [services.path])
    }

    /// The test image's pixel at (x, y), as R, G, B, A bytes in memory (AB24): distinct for
    /// every pixel of images up to 4096 wide and 4096 high, and differing in every byte
    /// from its neighbours', so a pixel taken from the wrong place shows.
    static func pixel(_ x: Int, _ y: Int) -> UInt32 {
        let r = UInt32(x & 0xff), g = UInt32(y & 0xff), b = UInt32(((x >> 8) & 0xf) | ((y >> 8) & 0xf) << 4)
        return r | g << 8 | b << 16 | 0xa5 << 24
    }

    static func attributes(width: Int, height: Int) -> ChunkAttributes {
        var attributes = ChunkAttributes()
        attributes.image = ChunkAttributes.ImageLayout(width: width, height: height, stride: width * 4, pixelFormat: .abgr8888)
        return attributes
    }

    /// Checks `thumbnail` is `width` × `height` scaled by the XML's rule: the smallest
    /// whole factor f with neither side over `maxSide`, each pixel the source's at the
    /// centre of its f × f box, clipped at the right and bottom edges.
    static func expectThumbnail(_ thumbnail: BlobBytes, layout: ChunkAttributes.ImageLayout, width: Int, height: Int, maxSide: Int) {
        let factor = max(1, (max(width, height) + maxSide - 1) / maxSide)
        let (w, h) = ((width + factor - 1) / factor, (height + factor - 1) / factor)
        #expect(layout.width == w && layout.height == h && layout.pixelFormat == .abgr8888)
        #expect(thumbnail.count == w * h * 4)
        let stride = layout.effectiveStride ?? 0
        var wrong = 0
        thumbnail.withUnsafeBytes { pixels in
            guard pixels.count >= (h - 1) * stride + w * 4 else { return wrong = -1 }
            for y in 0..<h {
                for x in 0..<w {
                    let expected = pixel(min(x * factor + factor / 2, width - 1), min(y * factor + factor / 2, height - 1))
                    if pixels.loadUnaligned(fromByteOffset: y * stride + x * 4, as: UInt32.self) != expected { wrong += 1 }
                }
            }
        }
        #expect(wrong == 0, "\(wrong) of \(w * h) pixels differ (-1: the thumbnail is shorter than its layout)")
    }

    /// The test image written in place into a blob (a memfd when large).
    static func image(width: Int, height: Int) throws -> Blob {
        try Blob(length: width * height * 4, attributes: attributes(width: width, height: height)) { buffer in
            for y in 0..<height {
                for x in 0..<width { buffer.storeBytes(of: pixel(x, y), toByteOffset: (y * width + x) * 4, as: UInt32.self) }
            }
        }
    }

    @Test func activatedItIntrospectsWithGdbusAndAnswersAnInlineCallFromGdbus() async throws {
        let bus = try Self.activatingBus()
        defer { bus.stop() }
        // gdbus's first message to the name activates the service.
        let (introspected, xml, err) = try await BuiltProducts.run(
            "gdbus", ["introspect", "--address", bus.address, "--dest", Thumbnailer1.busName, "--object-path", Thumbnailer1.path.rawValue])
        #expect(introspected == .exited(0), "\(err)")
        #expect(xml.contains("interface org.shmbus.examples.Thumbnailer1"))
        #expect(xml.contains("Thumbnail(in  (a{sv}ayahtt) image,"), "\(xml)")
        #expect(xml.contains("out (a{sv}ayahtt) thumbnail"))
        // A 2 × 2 image, inline, written by hand in GVariant text: scaled to one side of
        // 1 it is the pixel at (1, 1), the centre of the 2 × 2 box.
        let bytes = (0..<4).flatMap { i in withUnsafeBytes(of: Self.pixel(i % 2, i / 2).littleEndian, Array.init) }
        let blob = "({'width': <int64 2>, 'height': <int64 2>, 'stride': <int64 8>, 'pixel-format': <'AB24'>}, "
            + "[byte \(bytes.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))], @ah [], uint64 0, uint64 16)"
        let (called, reply, callErr) = try await BuiltProducts.run(
            "gdbus", ["call", "--address", bus.address, "--dest", Thumbnailer1.busName, "--object-path", Thumbnailer1.path.rawValue,
                      "--method", "org.shmbus.examples.Thumbnailer1.Thumbnail", blob, "1"])
        #expect(called == .exited(0), "\(callErr)")
        let expected = withUnsafeBytes(of: Self.pixel(1, 1).littleEndian, Array.init)
        #expect(reply.contains("[byte \(expected.map { "0x" + String(format: "%02x", $0) }.joined(separator: ", "))]"), "\(reply)")
        #expect(reply.contains("'width': <int64 1>") && reply.contains("'height': <int64 1>"), "\(reply)")
        #expect(reply.contains("@ah []") || reply.contains("[], uint64 0, uint64 4"), "\(reply)")
    }

    @Test(arguments: [(32, 32), (4096, 4096)])
    func aProxyGetsEveryPixelRight(width: Int, height: Int) async throws {
        let bus = try Self.activatingBus()
        defer { bus.stop() }
        let connection = try await DBusConnection.connect(to: bus.bus)
        defer { connection.close() }
        let thumbnailer = Thumbnailer1.Proxy(connection: connection, destination: Thumbnailer1.busName, path: Thumbnailer1.path)
        let image = try Self.image(width: width, height: height)
        // 4 KiB is under the threshold and goes inline; 64 MiB as a sealed memfd.
        #expect(image.isInline == (width * height * 4 < Blob.defaultThreshold))
        let thumbnail = try await thumbnailer.thumbnail(image: image, maxSide: 256, timeout: .seconds(120))
        let layout = try #require(thumbnail.attributes.image)
        Self.expectThumbnail(try thumbnail.map(), layout: layout, width: width, height: height, maxSide: 256)
    }

    @Test func theClientSendsA300MiBImageFileThatAyCouldNotCarry() async throws {
        let (width, height) = (10240, 7680)
        let length = width * height * 4
        #expect(length == 300 << 20 && length > Blob.inlineLimit)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-thumbnail-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The image as a raw file, written row by row.
        let input = directory.appendingPathComponent("image.rgba")
        #expect(FileManager.default.createFile(atPath: input.path, contents: nil))
        let file = try FileHandle(forWritingTo: input)
        var row = [UInt8](repeating: 0, count: width * 4)
        for y in 0..<height {
            row.withUnsafeMutableBytes { buffer in
                for x in 0..<width { buffer.storeBytes(of: Self.pixel(x, y).littleEndian, toByteOffset: x * 4, as: UInt32.self) }
            }
            try file.write(contentsOf: row)
        }
        try file.close()
        let bus = try Self.activatingBus()
        defer { bus.stop() }
        let output = directory.appendingPathComponent("thumbnail.rgba")
        let (status, out, err) = try await BuiltProducts.run(
            BuiltProducts.path("thumbnailer-client"), ["--bus", bus.address, "--max-side", "256", input.path, "\(width)", "\(height)", output.path])
        #expect(status == .exited(0), "\(err)")
        // 10240 / 40 = 256, 7680 / 40 = 192; 192 KiB come back as a memfd too.
        #expect(out.contains("256x192 AB24, \(256 * 192 * 4) bytes (memfd)"), "\(out)")
        let thumbnail = try Blob([UInt8](Data(contentsOf: output)), threshold: Int.max)
        Self.expectThumbnail(
            try thumbnail.map(), layout: .init(width: 256, height: 192, stride: 1024, pixelFormat: .abgr8888), width: width, height: height,
            maxSide: 256)
    }

    @Test func anImageWithoutItsLayoutIsUnsupportedAndTheServiceGoesOn() async throws {
        let bus = try Self.activatingBus()
        defer { bus.stop() }
        let connection = try await DBusConnection.connect(to: bus.bus)
        defer { connection.close() }
        let thumbnailer = Thumbnailer1.Proxy(connection: connection, destination: Thumbnailer1.busName, path: Thumbnailer1.path)
        let error = await #expect(throws: DBusError.self) {
            _ = try await thumbnailer.thumbnail(image: try Blob([UInt8](repeating: 1, count: 64)), maxSide: 8)
        }
        #expect(error?.name == Thumbnailer1.unsupportedErrorName)
        var other = Self.attributes(width: 4, height: 4)
        other.image = ChunkAttributes.ImageLayout(width: 4, height: 4, stride: 16, pixelFormat: .xrgb8888)
        let wrongFormat = await #expect(throws: DBusError.self) {
            _ = try await thumbnailer.thumbnail(image: try Blob([UInt8](repeating: 1, count: 64), attributes: other), maxSide: 8)
        }
        #expect(wrongFormat?.name == Thumbnailer1.unsupportedErrorName)
        let thumbnail = try await thumbnailer.thumbnail(image: try Self.image(width: 4, height: 4), maxSide: 2)
        Self.expectThumbnail(try thumbnail.map(), layout: try #require(thumbnail.attributes.image), width: 4, height: 4, maxSide: 2)
    }
}
