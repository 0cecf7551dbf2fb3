import ArgumentParser
import Foundation
import Glibc
import SharedSegments
import ShmBus

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a file (or stdin) as one chunk of a channel, or each of its lines as a chunk (--lines).",
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

    @Option(help: "Segment capacity (default: just enough for the input, rounded up to whole pages).")
    var capacity: ByteCount?

    @Flag(inversion: .prefixedNo, help: "Ask for transparent huge pages for the segment (where shmem_enabled allows them).")
    var hugePages = true

    @Flag(help: ArgumentHelp(
        "With --lines: write later generations into memory of retired segments that no reader holds (format version 2).",
        discussion: "Readers that have mapped it read on without mapping again (docs/FORMAT.md, \"Reused memory\"). Not with --persistent."))
    var reuseMemory = false

    @Flag(help: "Stay running (and keep non-persistent segments) until SIGINT or SIGTERM.")
    var hold = false

    @Flag(help: "Publish every line of the input as a chunk of its own (without its newline), as it arrives.")
    var lines = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Option(
        help: ArgumentHelp(
            "Who else may read: user:NAME|UID, group:NAME|GID, app:APP_ID (app:* for every sandboxed app), any; comma-separated or repeated.",
            discussion: "Without it, only your own Unix user and root may read (docs/SECURITY.md)."))
    var readers: [ReaderGrants] = []

    @Option(
        name: .customLong("attribute"),
        help: ArgumentHelp(
            "An attribute of the chunk: NAME=TEXT, NAME:int=N, NAME:ints=N,N,..., NAME:float=X; repeated for more.",
            discussion: "E.g. --attribute content-type=image/png, or an array: --attribute dtype=float32 --attribute shape:ints=2,3 (docs/FORMAT.md, \"Attributes\").",
            valueName: "attribute"))
    var attributes: [AttributeOption] = []

    @Argument(help: "The file to publish; - or nothing for stdin.")
    var file: String?

    @OptionGroup var bus: BusOption

    func validate() throws {
        if ttl != nil && !persistent { throw ValidationError("--ttl needs --persistent") }
        if lines && hold { throw ValidationError("--lines publishes until the input ends; --hold has nothing to hold") }
        if reuseMemory && !lines { throw ValidationError("--reuse-memory needs --lines: a one-shot publish never makes a second generation") }
        if reuseMemory && persistent { throw ValidationError("--reuse-memory and --persistent do not go together: no lease outlives the publisher") }
        // Duration.seconds takes an Int64: a larger value would trap, not be refused.
        if let ttl, ttl > UInt64(Int64.max) { throw ValidationError("--ttl \(ttl) is too large") }
        // Here, before a segment is registered, rather than by the publish after it.
        if key.utf8.count > SegmentLayout.maximumKeyLength {
            throw ValidationError("--key is \(key.utf8.count) bytes of UTF-8; the limit is \(SegmentLayout.maximumKeyLength)")
        }
    }

    func run() async throws {
        try await reportingFailures {
            if lines { return try await publishLines() }
            let input = try InputFile(path: file)
            var options = Publisher.Options()
            let attributes = AttributeOption.attributes(self.attributes)
            // Checked before a segment is registered, and sized into it.
            let block = try Self.checked { () throws(SegmentError) in try attributes.encodedBlock(payloadLength: input.size) }
            // A one-shot publish holds what it publishes, not a 64 MiB segment: the
            // registry's quotas and TotalBytes then count what is really there.
            guard let needed = SegmentLayout.capacity(forOneChunkOf: input.size, keyLength: key.utf8.count, attributesLength: block.count) else {
                throw ShmBusError.invalidArgument("an input of \(input.size) bytes is too large for a segment")
            }
            options.capacity = capacity?.bytes ?? needed
            // This key's previous chunk is not carried into the new segment: it would be
            // obsolete at once.
            options.replacingKeys = [key]
            options.persistent = persistent
            options.readers = ReadPolicy(grants: readers.flatMap(\.grants))
            options.hugePages = hugePages
            // The segment is made for this one chunk: the prefaulter starts on all of it as
            // the segment is made, and runs ahead of the reads below on the other core
            // while the segment is being registered and filled.
            options.prefaultBytes = needed
            options.ttl = ttl.map { .seconds(Int64($0)) }
            let publisher = try await Publisher.open(channel: channel, on: bus.resolved(), options: options)
            let published: PublishedChunk
            do {
                var progress = ProgressBar(total: input.size, label: "publishing")
                published = try publisher.publish(key: key, length: Int(input.size), attributes: attributes) { buffer in
                    try input.read(into: buffer) { progress.update($0) }
                }
            } catch {
                await Self.withdraw(publisher)
                throw error
            }
            await publisher.flush()
            // Handlers first: a script that reads the line below and at once sends
            // SIGTERM must find them installed, not die of the default action.
            let stop = AsyncStream<Void>.makeStream()
            let signals = hold ? SignalHandlers([SIGINT, SIGTERM]) { _ in stop.continuation.finish() } : nil
            // Written at once (not through stdio's buffer), so that a script reading a
            // pipe sees it while --hold keeps the segment.
            if json {
                try JSONOutput.print(published)
            } else {
                try Output.write("segment \(published.segment) offset \(published.offset) length \(published.length) sequence \(published.sequence)")
            }
            if hold {
                for await _ in stop.stream {}
            }
            withExtendedLifetime(signals) {}
            await publisher.close()
        }
    }

    /// After a failed publish (the input shrank, the chunk does not fit), takes this
    /// publisher's segments out of the registry again: a persistent one would otherwise
    /// stay behind as a channel without a chunk. Best effort: the failure being
    /// reported matters more than one that happens while cleaning up after it.
    static func withdraw(_ publisher: Publisher) async {
        let me = publisher.connection.uniqueName
        let registry = RegistryClient(connection: publisher.connection)
        if let segments = try? await registry.segments(of: publisher.channel) {
            for segment in segments {
                guard (try? await registry.segmentProperties(segment.name))?.owner == me else { continue }
                try? await registry.unregisterSegment(segment.name)
            }
        }
        await publisher.close()
    }

    /// A segment-level refusal (attributes that break FORMAT.md's rules) as the
    /// command's invalid-argument failure.
    static func checked<T>(_ body: () throws(SegmentError) -> T) throws(ShmBusError) -> T {
        do { return try body() } catch { throw .invalidArgument(error.message) }
    }
}
