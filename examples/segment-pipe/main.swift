// Writes a segment in one process and reads it zero-copy in another, with no bus:
// the parent creates a channel writer and starts a child that inherits the segment's
// and the doorbell's descriptors; the child maps the segment read-only, waits on the
// doorbell (futex), and verifies every chunk in place.
//
//   swift run segment-pipe-example [CHUNKS]
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBusSystem

func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    shmbus_mix64(bytes.baseAddress, bytes.count, 42)
}

func parent(chunks: Int) throws {
    // 256 MiB, so that one chunk can be 64 MiB: beyond what a D-Bus array can carry.
    let writer = try ChannelWriter(channel: "examples/segment-pipe", capacity: 256 << 20, policy: .whenFull)
    let segment = writer.current.fileDescriptor
    let doorbell = writer.doorbell.fileDescriptor
    let child = try ChildProcess(
        CommandLine.arguments[0], ["child", "\(segment.rawValue)", "\(doorbell.rawValue)", "\(chunks)"], stdout: .inherit,
        inheriting: [segment, doorbell])
    usleep(100_000)  // let the child start waiting, so the doorbell rings for real
    for i in 0..<chunks {
        let length = i == chunks - 1 ? 64 << 20 : 1024 + i % 4096
        let reservation = try writer.reserve(length: UInt64(length), key: i == chunks - 1 ? "big" : "")
        // Write in place: the payload goes straight into shared memory.
        for j in stride(from: 0, to: length, by: 8) where j + 8 <= length {
            reservation.buffer.storeBytes(of: UInt64(i &* 31 &+ j), toByteOffset: j, as: UInt64.self)
        }
        try writer.commit(reservation)
    }
    let status = child.waitUntilExit()
    print("parent: wrote \(chunks) chunks; child \(status)")
    if status != .exited(0) { exit(1) }
}

func child(segmentFD: Int32, doorbellFD: Int32, chunks: Int) throws {
    // Inherited under these numbers; this process owns them now.
    let reader = try SegmentReader(fd: UnixFileDescriptor(taking: segmentFD))
    let doorbell = try Doorbell.open(UnixFileDescriptor(taking: doorbellFD))
    let cursor = try ChannelCursor(segment: reader, start: .oldest)
    var received = 0
    var bytes = 0
    var inPlace = true
    while received < chunks {
        guard let event = try cursor.next() else {
            cursor.waitForData(.futex(doorbell, timeout: .milliseconds(100)), timeout: .seconds(10))
            continue
        }
        guard case .chunk(let chunk) = event else { continue }
        let i = received
        try chunk.withUnsafeBytes { (view) throws(SegmentError) in
            // The view is the mapping itself: no copy was made.
            if view.baseAddress != UnsafeRawPointer(reader.mapping.base) + Int(chunk.payloadOffset) { inPlace = false }
            for j in stride(from: 0, to: view.count, by: 8) where j + 8 <= view.count {
                if view.loadUnaligned(fromByteOffset: j, as: UInt64.self) != UInt64(i &* 31 &+ j) {
                    throw SegmentError(.badRecord, "chunk \(chunk.sequence) differs at byte \(j)")
                }
            }
        }
        received += 1
        bytes += chunk.count
    }
    print("child: verified \(received) chunks, \(bytes) bytes, read in place: \(inPlace)")
    if !inPlace { exit(1) }
}

let args = CommandLine.arguments
do {
    if args.count == 5, args[1] == "child", let s = Int32(args[2]), let d = Int32(args[3]), let n = Int(args[4]) {
        try child(segmentFD: s, doorbellFD: d, chunks: n)
    } else {
        try parent(chunks: args.count > 1 ? Int(args[1]) ?? 1000 : 1000)
    }
} catch {
    FileHandle.standardError.write(Data("segment-pipe: \(error)\n".utf8))
    exit(1)
}
