// Fetches the newest "latest" screenshot without copying it: looks it up in the
// registry, maps its segment read-only, and checksums the bytes in place (or writes
// them to a file).
//
//   swift run screenshot-viewer [--bus ADDRESS] [OUTPUT]
import CShmBusLinux
import DBus
import Foundation
import SharedSegments
import ShmBus

do {
    var bus = DBusConnection.Bus.session
    var positional: [String] = []
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        if argument == "--bus", let value = arguments.next() { bus = .init(parsing: value) } else { positional.append(argument) }
    }

    let registry = try await RegistryClient.connect(to: bus)
    let found = try await registry.lookup(channel: "screenshots", key: "latest")
    let (fd, _) = try await registry.openSegment(found.segment)
    let segment = try SegmentReader(fd: fd)
    guard let chunk = try segment.latest(key: "latest") else {
        print("the screenshot was replaced meanwhile; run again")
        exit(1)
    }
    let checksum = chunk.withUnsafeBytes { shmbus_mix64($0.baseAddress, $0.count, 0) }
    if let output = positional.first {
        try chunk.data.write(to: URL(fileURLWithPath: output))  // `data` wraps the mapping: no copy until the write
    }
    print("screenshot: \(chunk.count) bytes, sequence \(chunk.sequence), checksum \(String(checksum, radix: 16))")
} catch {
    FileHandle.standardError.write(Data("screenshot-viewer: \(error)\n".utf8))
    exit(1)
}
