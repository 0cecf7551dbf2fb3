import Crypto
import Logging
import NATS
import SharedSegments
import ShmBus
import Locking

/// Exports one channel: a subscriber on the local bus, whose chunks it publishes into
/// the stream part by part (docs/BRIDGE.md, "Export"). Runs on a thread of its own.
struct ChannelExporter: Sendable {
    let channel: String
    let configuration: BridgeConfiguration
    let layout: SubjectLayout
    let nats: NATSConnection
    let threads: BridgeThreads
    /// Held while one chunk's parts are sent, so that the parts of a chunk are
    /// consecutive in the stream whatever the other channels export (an importer
    /// assembles one chunk at a time).
    let sending: Lock<Void>
    let logger: Logger

    func run() {
        while !threads.isStopping {
            do {
                try export()
                return
            } catch {
                logger.warning("exporting '\(channel)' failed, starting again: \(error)")
                threads.pause(.seconds(1))
            }
        }
    }

    /// Where the stream left the channel: after its last chunk, or at it if that one
    /// is not complete (its parts are sent again; the stream drops those it holds).
    func resumePoint() throws -> ChannelCursor.Start {
        guard let last = try retrying("reading the stream's last part of '\(channel)'", {
            () throws(NATSError) -> NATSMessage? in try nats.lastMessage(stream: layout.stream, subject: layout.filter(channel: channel))
        }) else {
            return configuration.exportFromOldest ? .oldest : .now
        }
        let part = try ChunkPart(message: last, layout: layout)
        return .sequence(part.part == part.parts ? part.sequence + 1 : part.sequence)
    }

    private func export() throws {
        let start = try resumePoint()
        logger.info("exporting '\(channel)' into stream '\(layout.stream)' from \(start)")
        let bus = configuration.bus
        let channel = channel
        let subscriber = try awaitOnBridgeThread {
            try await Subscriber.open(channel: channel, on: bus, options: .init(start: start, waitForChannel: .seconds(3600)))
        }
        defer { subscriber.cancel() }
        try subscriber.readBlocking { event in
            switch event {
            case .chunk(let chunk): try send(chunk)
            case .gap(let missed, let after):
                // Nothing is sent: the next chunk's sequence jumps, which importers
                // report as the same gap.
                logger.warning("'\(channel)': \(missed) chunks after \(after) were collected before the bridge read them")
            case .publisherLeft(let owner):
                logger.info("'\(channel)': its publisher \(owner) left; waiting for the next")
            }
            return !threads.isStopping
        }
    }

    /// Bytes of headers a part of `chunk` may carry, NATS.c's own included, with room.
    func headerRoom(_ part: ChunkPart) -> Int {
        let listed = part.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        // The digest on the last part, Nats-Msg-Id and Nats-Expected-Stream, the header
        // line: a generous bound, so that the largest part always fits max_payload.
        return listed + 96 + part.messageID.utf8.count + 40 + layout.stream.utf8.count + 256
    }

    func send(_ chunk: Chunk) throws {
        let block = chunk.attributes.isEmpty ? nil : try chunk.attributes.encodedBlock(payloadLength: UInt64(chunk.count))
        var part = ChunkPart(
            channel: channel, key: chunk.key, sequence: chunk.sequence, timestamp: chunk.timestamp, expiry: chunk.expiry, part: 1,
            parts: 1, offset: 0, length: UInt64(chunk.count), attributesBlock: block)
        let partSize = min(configuration.partSize, nats.maxPayload - headerRoom(part))
        guard partSize > 0 else {
            throw BridgeError.invalidArgument("the server's max_payload \(nats.maxPayload) leaves no room for a part's data")
        }
        part.parts = max(1, (chunk.count + partSize - 1) / partSize)
        try sending.withLock { _ in
            try chunk.withUnsafeBytes { payload in
                var hasher = SHA256()
                for index in 1...part.parts {
                    let start = (index - 1) * partSize
                    let data = UnsafeRawBufferPointer(rebasing: payload[start..<min(start + partSize, payload.count)])
                    hasher.update(bufferPointer: data)
                    part.part = index
                    part.offset = UInt64(start)
                    if index > 1 { part.attributesBlock = nil }
                    if index == part.parts { part.digest = Array(hasher.finalize()) }
                    let subject = layout.subject(channel: channel, key: chunk.key, part: index)
                    let message = part
                    _ = try retrying("publishing part \(index) of \(part.parts) of '\(channel)' \(chunk.sequence)") {
                        () throws(NATSError) in
                        try nats.publish(
                            subject: subject, headers: message.headers, data: data, messageID: message.messageID,
                            expectedStream: layout.stream)
                    }
                }
            }
        }
        logger.debug("'\(channel)': chunk \(chunk.sequence) sent in \(part.parts) parts")
    }

    /// Retries `body` while the cluster cannot answer (a node down, a leader being
    /// elected): resending is safe, the stream drops what it already has by
    /// `Nats-Msg-Id`. Ends when the bridge stops.
    func retrying<T>(_ what: String, _ body: () throws(NATSError) -> T) throws -> T {
        var delay: Duration = .milliseconds(100)
        while true {
            do {
                return try body()
            } catch {
                if threads.isStopping { throw error }
                logger.warning("\(what): \(error); trying again")
                threads.pause(delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }
}
