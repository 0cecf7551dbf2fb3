// Publishes a "screenshot" (a file, or a generated 4K RGBA image) under the key
// "latest" of the channel "screenshots", persistently, then exits: the registry keeps
// it for an hour, and `screenshot-viewer` or `shmbus cat` can fetch it.
//
//   swift run screenshot-publisher [--bus ADDRESS] [FILE]
import DBus
import Foundation
import ShmBus

do {
    var bus = DBusConnection.Bus.session
    var positional: [String] = []
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        if argument == "--bus", let value = arguments.next() { bus = .init(parsing: value) } else { positional.append(argument) }
    }

    let image: Data
    if let file = positional.first {
        image = try Data(contentsOf: URL(fileURLWithPath: file))
    } else {
        var pixels = [UInt32](repeating: 0, count: 3840 * 2160)
        for y in 0..<2160 {
            for x in 0..<3840 { pixels[y * 3840 + x] = UInt32((x + y) & 0xFF) &* 0x0001_0101 | 0xFF00_0000 }
        }
        image = pixels.withUnsafeBytes { Data($0) }
    }

    var options = Publisher.Options()
    options.persistent = true
    options.ttl = .seconds(3600)
    options.capacity = UInt64(image.count + (1 << 20) + 4095) / 4096 * 4096
    let publisher = try await Publisher.open(channel: "screenshots", on: bus, options: options)
    let chunk = try publisher.publish(image, key: "latest")
    await publisher.close()
    print("published \(chunk.length) bytes as screenshots/latest (segment \(chunk.segment), sequence \(chunk.sequence))")
} catch {
    FileHandle.standardError.write(Data("screenshot-publisher: \(error)\n".utf8))
    exit(1)
}
