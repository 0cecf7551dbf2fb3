// A client of the example thumbnailer: sends a raw RGBA (AB24) image file as a blob
// (copied into a sealed memfd in the kernel, copy_file_range, when it is large) and
// writes the thumbnail's pixels to OUTPUT, printing its size.
//
//   swift run thumbnailer-client [--bus ADDRESS] [--max-side N] INPUT WIDTH HEIGHT OUTPUT
import DBus
import Foundation
import ShmBus
import ThumbnailerProtocol

do {
    var bus = DBusConnection.Bus.session
    var maxSide: UInt32 = 256
    var positional: [String] = []
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        switch argument {
        case "--bus": if let value = arguments.next() { bus = .init(parsing: value) }
        case "--max-side": if let value = arguments.next().flatMap(UInt32.init) { maxSide = value }
        default: positional.append(argument)
        }
    }
    guard positional.count == 4, let width = Int(positional[1]), let height = Int(positional[2]) else {
        throw DBusError.invalidArgument("usage: thumbnailer-client [--bus ADDRESS] [--max-side N] INPUT WIDTH HEIGHT OUTPUT")
    }
    var attributes = ChunkAttributes()
    attributes.image = ChunkAttributes.ImageLayout(width: width, height: height, stride: width * 4, pixelFormat: .abgr8888)
    let image = try Blob(contentsOf: positional[0], attributes: attributes)
    let connection = try await DBusConnection.connect(to: bus)
    let thumbnailer = Thumbnailer1.Proxy(connection: connection, destination: Thumbnailer1.busName, path: Thumbnailer1.path)
    let thumbnail = try await thumbnailer.thumbnail(image: image, maxSide: maxSide, timeout: .seconds(120))
    guard let layout = thumbnail.attributes.image else { throw DBusError.failed("the thumbnail has no image attributes") }
    let pixels = try thumbnail.map()
    try pixels.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: positional[3])) }
    print("\(layout.width)x\(layout.height) \(layout.pixelFormat.fourcc), \(pixels.count) bytes (\(thumbnail.isInline ? "inline" : "memfd"))")
    connection.close()
} catch {
    FileHandle.standardError.write(Data("thumbnailer-client: \(error)\n".utf8))
    exit(1)
}
