import ArgumentParser
import Foundation
import Glibc
import SharedSegments
import ShmBus

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a file (or stdin) as one chunk of a channel.",
        discussion: """
            The bytes go into a sealed shared-memory segment registered with the registry; only a \
            notification crosses the bus. Without --persistent the segment leaves the registry when \
            this command exits (use --hold to keep it until Ctrl-C).
            """)

    @Option(help: "The channel, e.g. screenshots or camera/0.")
    var channel: String

    @Option(help: "The chunk's key: publishing the key again replaces it (readers and `shmbus cat` see the newest).")
    var key = ""

    @Flag(help: "Keep the segment in the registry after this command exits.")
    var persistent = false

    @Option(help: "With --persistent: remove the segment this many seconds after this command exits.")
    var ttl: UInt64?

    @Option(help: "Segment capacity (default: enough for the input, at least 64MiB).")
    var capacity: ByteCount?

    @Flag(inversion: .prefixedNo, help: "Ask for transparent huge pages for the segment (where shmem_enabled allows them).")
    var hugePages = true

    @Flag(help: "Stay running (and keep non-persistent segments) until SIGINT or SIGTERM.")
    var hold = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Argument(help: "The file to publish; - or nothing for stdin.")
    var file: String?

    @OptionGroup var bus: BusOption

    func validate() throws {
        if ttl != nil && !persistent { throw ValidationError("--ttl needs --persistent") }
    }

    func run() async throws {
        try await reportingFailures {
            let input = try InputFile(path: file)
            var options = Publisher.Options()
            let needed = UInt64(SegmentLayout.headerSize + SegmentLayout.recordHeaderSize + 256 + 64) + input.size
            options.capacity = capacity?.bytes ?? max(64 << 20, (needed + 4095) / 4096 * 4096)
            options.persistent = persistent
            options.hugePages = hugePages
            options.ttl = ttl.map { .seconds(Int64($0)) }
            let publisher = try await Publisher.open(channel: channel, on: bus.resolved(), options: options)
            var progress = ProgressBar(total: input.size, label: "publishing")
            let published = try publisher.publish(key: key, length: input.size) { buffer in
                try input.read(into: buffer) { progress.update($0) }
            }
            await publisher.flush()
            if json {
                try JSONOutput.print(published)
            } else {
                print("segment \(published.segment) offset \(published.offset) length \(published.length) sequence \(published.sequence)")
            }
            if hold {
                let stop = AsyncStream<Void>.makeStream()
                let signals = SignalHandlers([SIGINT, SIGTERM]) { _ in stop.continuation.finish() }
                for await _ in stop.stream {}
                withExtendedLifetime(signals) {}
            }
            await publisher.close()
        }
    }
}

/// A file or stdin, read straight into the chunk's shared memory.
struct InputFile {
    let fd: Int32
    let size: UInt64
    /// Stdin or a pipe, whose size is unknown: read into memory first.
    let buffered: [UInt8]?

    private init(fd: Int32, size: UInt64, buffered: [UInt8]?) {
        self.fd = fd
        self.size = size
        self.buffered = buffered
    }

    init(path: String?) throws {
        guard let path, path != "-" else {
            self = Self.buffering(STDIN_FILENO)
            return
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ShmBusError(.notFound, "cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        fstat(fd, &info)
        if info.st_mode & S_IFMT == S_IFREG {
            self.init(fd: fd, size: UInt64(info.st_size), buffered: nil)
        } else {
            self = Self.buffering(fd)
            close(fd)
        }
    }

    private static func buffering(_ fd: Int32) -> InputFile {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return InputFile(fd: -1, size: UInt64(bytes.count), buffered: bytes)
    }

    /// Fills `buffer` (exactly `size` bytes), reporting progress.
    func read(into buffer: UnsafeMutableRawBufferPointer, progress: (UInt64) -> Void) throws {
        if let buffered {
            buffered.withUnsafeBytes { buffer.copyMemory(from: $0) }
            progress(size)
            return
        }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, min(8 << 20, buffer.count - done), off_t(done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ShmBusError(.invalidArgument, "the input ended after \(done) of \(size) bytes") }
            done += n
            progress(UInt64(done))
        }
    }
}
