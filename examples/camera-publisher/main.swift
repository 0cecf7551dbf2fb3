// A camera-style stream: 640x480 RGBA frames at 30 frames per second, all under the
// key "frame", each saying so in its attributes. Publishing a key again makes the previous frame obsolete, so a slow
// viewer always gets the newest frame and garbage collection keeps the segment small.
//
//   swift run camera-publisher [--bus ADDRESS] [FRAMES]
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
    let frames = positional.first.flatMap(Int.init) ?? 300

    var options = Publisher.Options()
    options.capacity = 16 << 20  // room for a dozen frames: obsolete ones are collected
    let publisher = try await Publisher.open(channel: "camera/0", on: bus, options: options)
    // What every frame is, stored with it: a consumer in any language learns the size
    // and pixel layout from the chunk (R, G, B, A bytes: DRM's ABGR8888, "AB24").
    var frame = ChunkAttributes(["content-type": .string("image/x-raw")])
    frame.image = .init(width: 640, height: 480, stride: 640 * 4, pixelFormat: .abgr8888)
    let clock = ContinuousClock()
    let start = clock.now
    for index in 0..<frames {
        // Rendered straight into shared memory: the frame is never copied.
        try publisher.publish(key: "frame", length: 640 * 480 * 4, attributes: frame) { buffer in
            let pixels = buffer.bindMemory(to: UInt32.self)
            let shift = UInt32(truncatingIfNeeded: index * 3)
            for i in pixels.indices { pixels[i] = (UInt32(truncatingIfNeeded: i) &+ shift) & 0xFF | 0xFF00_0000 }
            pixels[0] = UInt32(truncatingIfNeeded: index)  // the frame number, for the viewer
        }
        try await Task.sleep(until: start + .milliseconds(Int64(index + 1) * 1000 / 30), clock: clock)
    }
    print("published \(frames) frames; \(publisher.signalsSent) Committed signals")
    await publisher.close()
} catch {
    FileHandle.standardError.write(Data("camera-publisher: \(error)\n".utf8))
    exit(1)
}
