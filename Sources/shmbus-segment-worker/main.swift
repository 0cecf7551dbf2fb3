// A worker for the multi-process tests of SharedSegments (not installed).
//
//   shmbus-segment-worker write DIR CHUNKS CAPACITY SEED
//   shmbus-segment-worker read DIR WRITER_PID CHUNKS
//
// The writer stands in for the registry with a directory: for every segment it
// creates it writes DIR/<segment name> holding the descriptor number, before retiring
// the previous one (as a publisher registers before retiring). Readers open a
// segment as /proc/<writer pid>/fd/<n>, read-only: a new open file description of the
// same memfd, which the seals keep read-only. Passing descriptors over a socket
// (SCM_RIGHTS) would work too, but needs a live connection per reader; the /proc path
// lets any number of readers join at any time, like the registry does.
import CShmBusLinux
import Foundation
import Glibc
import SharedSegments
import ShmBusSystem

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("worker: \(message)\n".utf8))
    exit(1)
}

/// The payload of chunk `sequence`: its sequence, a checksum of the rest, then bytes
/// derived from the seed.
func payload(sequence: UInt64, length: Int, seed: UInt64) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: max(length, 16))
    var state = seed ^ (sequence &* 0x9E37_79B9_7F4A_7C15)
    for i in 16..<bytes.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        bytes[i] = UInt8(truncatingIfNeeded: state)
    }
    withUnsafeBytes(of: sequence.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
    let sum = bytes.withUnsafeBytes { shmbus_mix64($0.baseAddress! + 16, $0.count - 16, 7) }
    withUnsafeBytes(of: sum.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
    return bytes
}

func check(_ chunk: Chunk) -> Bool {
    chunk.withUnsafeBytes { buffer in
        guard buffer.count >= 16 else { return false }
        let sequence = buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        let sum = buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        return sequence == chunk.sequence && sum == shmbus_mix64(buffer.baseAddress! + 16, buffer.count - 16, 7)
    }
}

func publish(_ name: String, fd: Int32, in dir: String) {
    publish(name, text: "\(fd)", in: dir)
}

/// Writes DIR/name atomically (a temporary file renamed into place).
func publish(_ name: String, text: String, in dir: String) {
    let tmp = "\(dir)/.\(name)"
    do {
        try text.write(toFile: tmp, atomically: false, encoding: .utf8)
        guard rename(tmp, "\(dir)/\(name)") == 0 else { fail("rename \(tmp)") }
    } catch {
        fail("cannot write \(tmp): \(error)")
    }
}

func write(dir: String, chunks: UInt64, capacity: UInt64, seed: UInt64) throws {
    let writer = try ChannelWriter(channel: "test/multiprocess", capacity: capacity)
    var keep: [SegmentWriter] = [writer.current]
    publish(writer.current.header.name, fd: writer.current.fileDescriptor.rawValue, in: dir)
    publish("first-name", text: writer.current.header.name, in: dir)
    var rng = seed
    var rotations = 0
    for sequence in 1...chunks {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        let length = 16 + Int(rng % 2048)
        let key = rng % 4 == 0 ? "key-\(rng % 5000)" : ""
        let bytes = payload(sequence: sequence, length: length, seed: seed)
        let appended = try bytes.withUnsafeBytes { try writer.append($0, key: key) }
        guard appended.sequence == sequence else { fail("sequence \(appended.sequence) != \(sequence)") }
        if let rotation = appended.rotation {
            // Register the successor, then retire the old segment.
            keep.append(rotation.new)
            publish(rotation.new.header.name, fd: rotation.new.fileDescriptor.rawValue, in: dir)
            writer.retire(rotation)
            rotations += 1
        }
    }
    FileHandle.standardOutput.write(Data("wrote \(chunks) rotations \(rotations)\n".utf8))
    // Keep every segment open until the test is done with the readers.
    _ = readLine()
    withExtendedLifetime(keep) {}
}

/// How long a reader waits for the writer to publish a segment's file: a bound that only
/// keeps a broken writer from hanging the test. The writer normally takes milliseconds,
/// but it is a process started on a machine the whole suite shares (perhaps under TSan).
let patience: Duration = .seconds(60)

func openSegment(_ name: String, dir: String, writerPID: String) throws(SegmentError) -> SegmentReader {
    let deadline = ContinuousClock.now + patience
    repeat {
        if let text = try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8) {
            let fd: UnixFileDescriptor
            do throws(SystemError) { fd = try .open("/proc/\(writerPID)/fd/\(text)", O_RDONLY) } catch { fail("\(error)") }
            return try SegmentReader(fd: fd)
        }
        usleep(1000)
    } while ContinuousClock.now < deadline
    fail("segment \(name) never appeared")
}

func read(dir: String, writerPID: String, chunks: UInt64) throws {
    // The writer may not have created its first segment yet.
    var firstName: String?
    let deadline = ContinuousClock.now + patience
    while firstName == nil, ContinuousClock.now < deadline {
        firstName = try? String(contentsOfFile: "\(dir)/first-name", encoding: .utf8)
        if firstName == nil { usleep(1000) }
    }
    guard let first = firstName else { fail("no first segment after \(patience)") }
    let cursor = try ChannelCursor(segment: openSegment(first, dir: dir, writerPID: writerPID), start: .oldest) {
        (id) throws(SegmentError) in try openSegment(id.name, dir: dir, writerPID: writerPID)
    }
    var delivered: UInt64 = 0
    var previous: UInt64 = 0
    var segments = Set<String>()
    while (cursor.lastSequence ?? 0) < chunks {
        guard let event = try cursor.next() else {
            cursor.waitForData(.poll(.microseconds(200)), timeout: .seconds(30))
            continue
        }
        switch event {
        case .chunk(let chunk):
            guard chunk.sequence > previous else { fail("sequence \(chunk.sequence) after \(previous)") }
            guard check(chunk) else { fail("checksum of chunk \(chunk.sequence) is wrong") }
            previous = chunk.sequence
            delivered += 1
            segments.insert(chunk.segment.name)
        case .gap(let missed, let after):
            fail("gap of \(missed) after \(after)")
        case .retired:
            fail("retired without a resolver")
        }
    }
    guard delivered + cursor.skippedChunks == chunks else {
        fail("delivered \(delivered) + skipped \(cursor.skippedChunks) != \(chunks)")
    }
    print("read \(delivered) skipped \(cursor.skippedChunks) segments \(segments.count)")
}

let args = CommandLine.arguments
do {
    switch args.dropFirst().first {
    case "write" where args.count == 6:
        try write(dir: args[2], chunks: UInt64(args[3])!, capacity: UInt64(args[4])!, seed: UInt64(args[5])!)
    case "read" where args.count == 5:
        try read(dir: args[2], writerPID: args[3], chunks: UInt64(args[4])!)
    default:
        fail("usage: shmbus-segment-worker write DIR CHUNKS CAPACITY SEED | read DIR WRITER_PID CHUNKS")
    }
} catch {
    fail("\(error)")
}
