// Watches the camera stream: wakes on the publisher's Committed signals (or the futex
// with --futex), and reports frames received, frames skipped because a newer one had
// already replaced them, and the latency from render to view.
//
//   swift run camera-viewer [--bus ADDRESS] [--futex] [FRAMES]
import DBus
import Foundation
import SharedSegments
import ShmBus

do {
    var bus = DBusConnection.Bus.session
    var wait = Subscriber.Wait.bus
    var positional: [String] = []
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        if argument == "--bus", let value = arguments.next() {
            bus = .init(parsing: value)
        } else if argument == "--futex" {
            wait = .futex
        } else {
            positional.append(argument)
        }
    }
    let wanted = positional.first.flatMap(Int.init) ?? 100

    let subscriber = try await Subscriber.open(channel: "camera/0", on: bus, options: .init(start: .now, wait: wait))
    var received = 0
    var lastFrame: UInt32?
    var skipped = 0
    var latencies: [Double] = []
    for try await chunk in subscriber.chunks {
        let frame = chunk.withUnsafeBytes { $0.load(as: UInt32.self) }
        if let lastFrame, frame > lastFrame + 1 { skipped += Int(frame - lastFrame - 1) }
        lastFrame = frame
        latencies.append(Double(RealtimeClock.now() - chunk.timestamp) / 1000)
        received += 1
        if received == wanted { break }
    }
    subscriber.cancel()
    latencies.sort()
    let median = latencies.isEmpty ? 0 : latencies[latencies.count / 2]
    print("viewed \(received) frames, \(skipped) replaced before the viewer got to them; median latency \(Int(median)) µs")
} catch {
    FileHandle.standardError.write(Data("camera-viewer: \(error)\n".utf8))
    exit(1)
}
