import DBus
import Locking
import ShmBus
import ThumbnailerProtocol

/// The service: the generated `Thumbnailer1.Implementation`. Its blob argument arrives
/// decoded and checked (seals, bounds, attributes against the length) by the generated
/// dispatch; what is left to check here is the service's own rule, the pixel format.
struct Thumbnailer: Thumbnailer1.Implementation {
    /// When the last call ended, for the idle exit of an activated service.
    let lastCall: Lock<ContinuousClock.Instant>

    func thumbnail(image: Blob, maxSide: UInt32, call: DBusMethodCall) async throws -> Blob {
        defer { lastCall.withLock { $0 = .now } }
        guard let layout = image.attributes.image else {
            throw Thumbnailer1.unsupported("the image has no width, height and pixel-format attributes")
        }
        guard layout.pixelFormat == .abgr8888 else {
            throw Thumbnailer1.unsupported("pixel-format \(layout.pixelFormat) is not AB24 (R, G, B, A in memory)")
        }
        guard maxSide >= 1 else { throw Thumbnailer1.unsupported("max_side must be at least 1") }
        // Checked against the blob's length when it was decoded (FORMAT.md's image fit):
        // every row read below is inside the mapping.
        guard let stride = layout.effectiveStride else { throw Thumbnailer1.unsupported("the image's stride overflows") }
        let side = Int(maxSide)
        let factor = max(1, (max(layout.width, layout.height) + side - 1) / side)
        let width = (layout.width + factor - 1) / factor
        let height = (layout.height + factor - 1) / factor
        var attributes = ChunkAttributes()
        attributes.image = ChunkAttributes.ImageLayout(width: width, height: height, stride: width * 4, pixelFormat: .abgr8888)
        let source = try image.map()
        return try Blob(length: width * height * 4, attributes: attributes) { output in
            source.withUnsafeBytes { pixels in
                Self.scale(pixels, width: layout.width, height: layout.height, stride: stride, factor: factor, into: output, outputWidth: width)
            }
        }
    }

    /// Point sampling at the centre of each `factor` × `factor` box (clipped at the
    /// right and bottom edges): reads `outputWidth` × rows pixels, not the whole image,
    /// so a 300 MiB image costs the pages it touches.
    static func scale(
        _ pixels: UnsafeRawBufferPointer, width: Int, height: Int, stride: Int, factor: Int,
        into output: UnsafeMutableRawBufferPointer, outputWidth: Int
    ) {
        let outputHeight = output.count / (outputWidth * 4)
        for y in 0..<outputHeight {
            let sourceRow = min(y * factor + factor / 2, height - 1) * stride
            for x in 0..<outputWidth {
                let sourceColumn = min(x * factor + factor / 2, width - 1) * 4
                let pixel = pixels.loadUnaligned(fromByteOffset: sourceRow + sourceColumn, as: UInt32.self)
                output.storeBytes(of: pixel, toByteOffset: (y * outputWidth + x) * 4, as: UInt32.self)
            }
        }
    }
}
