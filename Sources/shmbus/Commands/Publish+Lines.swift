import ArgumentParser
import Foundation
import Glibc
import SharedSegments
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
        /// With --reuse-memory: generations written into a retired segment's memory.
        var reusedGenerations: UInt64?
    }

    func publishLines() async throws {
        let (input, name) = try Self.openLines(file)
        var options = Publisher.Options()
        if let capacity { options.capacity = capacity.bytes }
        options.persistent = persistent
        options.reuseMemory = reuseMemory
        options.readers = ReadPolicy(grants: readers.flatMap(\.grants))
        options.hugePages = hugePages
        options.ttl = ttl.map { .seconds(Int64($0)) }
        // The largest line a chunk can hold (with this key), checked while a line is
        // still being read, so that input without newlines is refused, not buffered.
        let attributes = AttributeOption.attributes(self.attributes)
        // A string-only block's size does not depend on the line; one that describes an
        // array or image is refused here unless it fits an empty line (and then, for any
        // other line, by the publish).
        let block = try Self.checked { () throws(SegmentError) in try attributes.encodedBlock(payloadLength: 0) }
        guard let longest = SegmentLayout.largestPayload(capacity: options.capacity, keyLength: key.utf8.count, attributesLength: block.count) else {
            throw ShmBusError.invalidArgument("--capacity \(options.capacity) leaves no room for a chunk")
        }
        let publisher = try await Publisher.open(channel: channel, on: bus.resolved(), options: options)
        var summary = PublishedLines(lines: 0, segment: publisher.currentSegment)
        do {
            var carried: [UInt8] = []  // a line begun in an earlier read
            for try await read in Self.reads(of: input, name: name) {
                let published = try read.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) throws(ShmBusError) in
                    try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in
                        try Self.appendLines(bytes, carried: &carried, longest: longest, key: key, attributes: attributes, to: batch)
                    }
                }
                summary.add(published)
            }
            if !carried.isEmpty {  // the last line may have no newline
                summary.add(try publisher.publishBatch { (batch: borrowing Publisher.Batch) throws(ShmBusError) in try batch.append(carried, key: key, attributes: attributes) })
            }
        } catch {
            // What was published stays published: its registration and last signal go
            // out before the failure is reported.
            await publisher.flush()
            await publisher.close()
            throw error
        }
        await publisher.flush()
        summary.segment = publisher.currentSegment
        if reuseMemory { summary.reusedGenerations = publisher.memoryReuse.reusedGenerations }
        if json {
            try JSONOutput.print(summary)
        } else {
            let range = summary.firstSequence.map { "sequences \($0)-\(summary.lastSequence ?? $0)" } ?? "no sequences"
            try Output.write("published \(summary.lines) lines, \(range), segment \(summary.segment)")
        }
        await publisher.close()
    }

    /// Appends every line that `bytes` completes; the rest waits in `carried`.
    private static func appendLines(
        _ bytes: UnsafeRawBufferPointer, carried: inout [UInt8], longest: UInt64, key: String, attributes: ChunkAttributes,
        to batch: borrowing Publisher.Batch
    ) throws(ShmBusError) {
        var start = 0
        for index in 0..<bytes.count where bytes[index] == UInt8(ascii: "\n") {
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
            if carried.isEmpty {
                try batch.append(line, key: key, attributes: attributes)
            } else {
                carried.append(contentsOf: line)
                try batch.append(carried, key: key, attributes: attributes)
                carried.removeAll(keepingCapacity: true)
            }
            start = index + 1
        }
        carried.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...]))
        guard UInt64(carried.count) <= longest else {
            throw .invalidArgument("a line is longer than the largest chunk (\(longest) bytes); use a larger --capacity")
        }
    }

    private static func openLines(_ file: String?) throws(FileFailure) -> (UnixFileDescriptor, String) {
        if let file, file != "-" {
            do { return (try UnixFileDescriptor.open(file, O_RDONLY | O_CLOEXEC), file) } catch {
                throw FileFailure(.noInput, "cannot open \(file): \(error)")
            }
        }
        do { return (try UnixFileDescriptor(duplicating: STDIN_FILENO), "stdin") } catch {
            throw FileFailure(.noInput, "cannot read stdin: \(error)")
        }
    }

    /// The input's reads (up to 1 MiB each), made on a thread of their own: a read may
    /// block for hours (`tail -f`), and a thread of the concurrency pool blocked in it
    /// would be one less for the publisher's own tasks (its coalesced signals, its
    /// registrations), of which a one-core machine has one.
    private static func reads(of input: UnixFileDescriptor, name: String) -> AsyncThrowingStream<[UInt8], any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingOldest(4))
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let count: Int
                do {
                    count = try buffer.withUnsafeMutableBytes { (bytes) throws(SystemError) in try input.read(into: bytes) }
                } catch {
                    continuation.finish(throwing: FileFailure(.readFailed, "cannot read \(name): \(error)"))
                    return
                }
                if count == 0 { break }
                // Waits while four reads wait to be published: the input is read no
                // faster than it is published.
                var result = continuation.yield(Array(buffer[..<count]))
                while case .dropped = result {
                    usleep(1_000)
                    result = continuation.yield(Array(buffer[..<count]))
                }
                // The publisher stopped (it failed): nothing more to read for.
                if case .terminated = result { return }
            }
            continuation.finish()
        }
        thread.start()
        return stream
    }
}

extension Publish.PublishedLines {
    mutating func add(_ published: Publisher.PublishedBatch) {
        lines += published.count
        if let sequences = published.sequences {
            firstSequence = firstSequence ?? sequences.lowerBound
            lastSequence = sequences.upperBound
        }
    }
}
