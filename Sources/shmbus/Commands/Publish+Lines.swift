import ArgumentParser
import Glibc
import ShmBus
import ShmBusSystem

/// `shmbus publish --lines`: every line of the input is a chunk (without its newline),
/// published as it arrives; the lines one read brings are one batch
/// (`Publisher.publishBatch`), so a fast producer pays one commit per read, and a slow
/// one (a log followed with `tail -f`) gets each line out as soon as it is read.
extension Publish {
    /// What a `--lines` publish did, as `--json` prints it.
    struct PublishedLines: Encodable {
        var lines: Int
        var firstSequence: UInt64?
        var lastSequence: UInt64?
        var segment: String
    }

    func publishLines() async throws {
        let input: UnixFileDescriptor
        let name: String
        if let file, file != "-" {
            do { input = try UnixFileDescriptor.open(file, O_RDONLY | O_CLOEXEC) } catch {
                throw FileFailure(.noInput, "cannot open \(file): \(error)")
            }
            name = file
        } else {
            do { input = try UnixFileDescriptor(duplicating: STDIN_FILENO) } catch {
                throw FileFailure(.noInput, "cannot read stdin: \(error)")
            }
            name = "stdin"
        }
        var options = Publisher.Options()
        if let capacity { options.capacity = capacity.bytes }
        options.persistent = persistent
        options.readers = ReadPolicy(grants: readers.flatMap(\.grants))
        options.hugePages = hugePages
        options.ttl = ttl.map { .seconds(Int64($0)) }
        let publisher = try await Publisher.open(channel: channel, on: bus.resolved(), options: options)
        let key = self.key
        var summary = PublishedLines(lines: 0, segment: publisher.currentSegment)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var carried: [UInt8] = []  // a line begun in an earlier read
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { (bytes) throws(SystemError) in try input.read(into: bytes) }
            } catch {
                throw FileFailure(.readFailed, "cannot read \(name): \(error)")
            }
            let end = count == 0
            let published = try buffer.withUnsafeBytes { (read: UnsafeRawBufferPointer) throws(ShmBusError) in
                try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
                    var start = 0
                    for index in 0..<count where read[index] == UInt8(ascii: "\n") {
                        let line = UnsafeRawBufferPointer(rebasing: read[start..<index])
                        if carried.isEmpty {
                            try batch.append(line, key: key)
                        } else {
                            carried.append(contentsOf: line)
                            try batch.append(carried, key: key)
                            carried.removeAll(keepingCapacity: true)
                        }
                        start = index + 1
                    }
                    carried.append(contentsOf: UnsafeRawBufferPointer(rebasing: read[start..<count]))
                    // The last line may have no newline.
                    if end, !carried.isEmpty { try batch.append(carried, key: key) }
                }
            }
            summary.lines += published.count
            if let sequences = published.sequences {
                summary.firstSequence = summary.firstSequence ?? sequences.lowerBound
                summary.lastSequence = sequences.upperBound
            }
            if end { break }
        }
        await publisher.flush()
        summary.segment = publisher.currentSegment
        if json {
            try JSONOutput.print(summary)
        } else {
            let range = summary.firstSequence.map { "sequences \($0)-\(summary.lastSequence ?? $0)" } ?? "no sequences"
            try Output.write("published \(summary.lines) lines, \(range), segment \(summary.segment)")
        }
        await publisher.close()
    }
}
