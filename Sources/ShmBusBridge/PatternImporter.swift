import Crypto
import Logging
import NATS
import SharedSegments
import ShmBus

/// Imports the channels one pattern matches: a durable pull consumer on the stream, and
/// for each channel this host's publisher, into whose segment each chunk is assembled
/// in place and committed whole (docs/BRIDGE.md, "Import"). Runs on a thread of its own,
/// which alone uses the subscription and the messages.
final class PatternImporter {
    let pattern: String
    let configuration: BridgeConfiguration
    let layout: SubjectLayout
    let nats: NATSConnection
    let threads: BridgeThreads
    let logger: Logger
    private var subscription: PullSubscription?
    private var queued: [NATSMessage] = []
    private var publishers: [String: Publisher] = [:]

    init(pattern: String, configuration: BridgeConfiguration, layout: SubjectLayout, nats: NATSConnection, threads: BridgeThreads, logger: Logger) {
        self.pattern = pattern
        self.configuration = configuration
        self.layout = layout
        self.nats = nats
        self.threads = threads
        self.logger = logger
    }

    /// Why an assembly stopped before its chunk was whole.
    private enum Interrupted: Error {
        case stopping
        case otherMessage(String)
        case digestMismatch
    }

    func run() {
        var consumer = ConsumerConfiguration(
            durable: layout.durableName(bridge: configuration.name, pattern: pattern), filterSubject: layout.filter(pattern: pattern))
        consumer.ackPolicy = .all
        consumer.deliverPolicy = configuration.importAll ? .all : .lastPerSubject
        consumer.ackWait = configuration.ackWait
        consumer.maxAckPending = configuration.maxAckPending
        while !threads.isStopping {
            if subscription == nil {
                do {
                    subscription = try subscribe(consumer)
                    logger.info("importing '\(pattern)' from stream '\(layout.stream)' through consumer '\(consumer.durable)'")
                } catch {
                    logger.warning("import '\(pattern)': cannot subscribe to consumer '\(consumer.durable)' yet: \(error)")
                    threads.pause(.seconds(1))
                    continue
                }
            }
            guard let message = next() else { continue }
            handle(message)
        }
        subscription = nil
        for publisher in publishers.values { _ = try? awaitOnBridgeThread { await publisher.close() } }
    }

    /// The consumer, made if it does not exist. If a bridge stopped while messages were
    /// delivered to it and not acknowledged, the server would deliver them again only
    /// after `AckWait`, after newer ones, and the newer chunks would be applied first:
    /// the consumer is then made again from its acknowledgement floor, so that they
    /// come first, in order (those applied already are recognised by their sequence).
    private func subscribe(_ consumer: ConsumerConfiguration) throws(NATSError) -> PullSubscription {
        guard let state = try nats.consumerInfo(stream: layout.stream, durable: consumer.durable) else {
            return try nats.pullSubscribe(stream: layout.stream, consumer: consumer)
        }
        guard state.deliveredStreamSequence > state.ackFloorStreamSequence else {
            return try nats.pullSubscribe(stream: layout.stream, existing: consumer.durable)
        }
        logger.notice(
            "import '\(pattern)': \(state.ackPending) messages were delivered and not acknowledged; starting consumer '\(consumer.durable)' again after stream sequence \(state.ackFloorStreamSequence)")
        try nats.deleteConsumer(stream: layout.stream, durable: consumer.durable)
        var again = consumer
        if state.ackFloorStreamSequence > 0 { again.deliverPolicy = .startSequence(state.ackFloorStreamSequence + 1) }
        return try nats.pullSubscribe(stream: layout.stream, consumer: again)
    }

    /// The next message, nil once the bridge stops.
    private func next() -> NATSMessage? {
        while queued.isEmpty {
            guard !threads.isStopping, let subscription else { return nil }
            do {
                queued = try subscription.fetch(batch: 64, timeout: .seconds(1))
            } catch {
                logger.warning("import '\(pattern)': fetching failed: \(error)")
                threads.pause(.milliseconds(500))
            }
        }
        return queued.removeFirst()
    }

    /// Applies or skips one message that should start a chunk. Every message before it
    /// has been handled, so acknowledging it (AckPolicy all) covers only handled ones.
    private func handle(_ first: NATSMessage) {
        let part: ChunkPart
        do {
            part = try ChunkPart(message: first, layout: layout)
            guard BridgeConfiguration.matches(pattern, channel: part.channel) else {
                throw BridgeError.badMessage(subject: first.subject, reason: "channel '\(part.channel)' is not under '\(pattern)'")
            }
            guard part.part == 1 else {
                // The rest of a chunk whose start was interrupted, or an older chunk's
                // part left on its subject (a late joiner's newest-per-subject).
                throw BridgeError.badMessage(subject: first.subject, reason: "part \(part.part) of \(part.sequence) without its start")
            }
        } catch {
            logger.notice("import '\(pattern)': skipping a message: \(error)")
            acknowledge(first)
            return
        }
        do {
            let publisher = try self.publisher(for: part.channel)
            if part.sequence <= publisher.lastSequence {
                // Applied already (redelivered after a restart): the channel remembers.
                acknowledge(first)
                return
            }
            if part.expiry != 0, part.expiry <= RealtimeClock.now() {
                // Readers would skip it; its parts that follow are skipped as strays.
                logger.debug("import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' expired before it arrived")
                acknowledge(first)
                return
            }
            let last = try assemble(part, first: first, into: publisher)
            acknowledge(last)
            logger.debug("import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' published, \(part.parts) parts")
        } catch let interrupted as Interrupted {
            switch interrupted {
            case .stopping: return
            case .otherMessage(let why):
                logger.warning("import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' abandoned: \(why)")
            case .digestMismatch:
                logger.error("import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' fails its SHA-256; not published")
            }
        } catch {
            if let refusal = error as? ShmBusError, refusal.refusesTheChunk {
                // This chunk can never be published here (larger than the channel's
                // --capacity, say): delivering it again would stop the pattern's
                // import for good. Its later parts are skipped as strays.
                logger.error(
                    "import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' (\(part.length) bytes) can never be published on this host; skipped: \(refusal)")
                acknowledge(first)
                return
            }
            logger.error("import '\(pattern)': chunk \(part.sequence) of '\(part.channel)' not published here, trying again: \(error)")
            rewind(channel: part.channel)
        }
    }

    /// After this host's bus or registry refused a chunk (the registry restarting, a
    /// quota, the bus gone), the chunk is not acknowledged, which would lose it: the
    /// channel's publisher is opened afresh, the messages fetched after it are dropped,
    /// and the consumer starts again from its acknowledgement floor (``subscribe(_:)``),
    /// so that the chunk comes again first. Chunks applied since are recognised by
    /// their sequence. The import of this pattern waits, in order, until the chunk can
    /// be published: at-least-once, not skip-on-error (docs/BRIDGE.md, "Delivery").
    private func rewind(channel: String) {
        if let publisher = publishers.removeValue(forKey: channel) {
            _ = try? awaitOnBridgeThread { await publisher.close() }
        }
        queued.removeAll()
        subscription = nil
        threads.pause(.seconds(1))
    }

    /// Reserves the chunk in `publisher`'s segment, copies every part into it in
    /// order, checks the digest and commits. Returns the chunk's last message.
    private func assemble(_ first: ChunkPart, first message: NATSMessage, into publisher: Publisher) throws -> NATSMessage {
        let attributes = try first.attributesBlock.map { block in
            try block.withUnsafeBytes { try ChunkAttributes(block: $0, payloadLength: first.length) }
        } ?? ChunkAttributes()
        guard first.length <= UInt64(Int.max) else { throw BridgeError.badMessage(subject: message.subject, reason: "length \(first.length)") }
        var last = message
        let origin = Publisher.Origin(sequence: first.sequence, timestamp: first.timestamp, expiry: first.expiry)
        try publisher.publish(key: first.key, length: Int(first.length), origin: origin, attributes: attributes) { buffer in
            var hasher = SHA256()
            var current = first
            func place(_ data: UnsafeRawBufferPointer, at offset: UInt64) {
                guard data.count > 0, let base = buffer.baseAddress else { return }
                (base + Int(offset)).copyMemory(from: data.baseAddress!, byteCount: data.count)
                hasher.update(bufferPointer: data)
            }
            place(message.data, at: 0)
            var end = UInt64(message.data.count)
            while current.part < current.parts {
                guard let next = self.next() else { throw Interrupted.stopping }
                guard let part = try? ChunkPart(message: next, layout: self.layout), part.channel == first.channel,
                    part.sequence == first.sequence, part.timestamp == first.timestamp, part.length == first.length,
                    part.parts == first.parts
                else {
                    self.queued.insert(next, at: 0)
                    throw Interrupted.otherMessage("another message came before part \(current.part + 1) of \(current.parts)")
                }
                if part.part <= current.part { continue }  // delivered again: already placed
                guard part.part == current.part + 1, part.offset == end else {
                    self.queued.insert(next, at: 0)
                    throw Interrupted.otherMessage("part \(part.part) at \(part.offset) came after part \(current.part), which ends at \(end)")
                }
                place(next.data, at: part.offset)
                end += UInt64(next.data.count)
                current = part
                last = next
            }
            guard let digest = current.digest, Array(hasher.finalize()) == digest else { throw Interrupted.digestMismatch }
        }
        return last
    }

    private func acknowledge(_ message: NATSMessage) {
        do {
            try message.acknowledge()
        } catch {
            // Not fatal: the message comes again after AckWait, and is recognised
            // by its sequence.
            logger.warning("import '\(pattern)': acknowledging failed: \(error)")
        }
    }

    /// This host's publisher of `channel`, opened on first use: persistent for the
    /// hold time, so that a restarted bridge continues its history (and knows what it
    /// applied).
    private func publisher(for channel: String) throws -> Publisher {
        if let publisher = publishers[channel] { return publisher }
        var options = Publisher.Options()
        options.capacity = configuration.capacity
        options.persistent = true
        options.ttl = configuration.hold
        options.readers = configuration.readers
        let opening = options
        let bus = configuration.bus
        let logger = logger
        let publisher = try awaitOnBridgeThread {
            try await Publisher.open(channel: channel, on: bus, options: opening, logger: logger)
        }
        publishers[channel] = publisher
        logger.info("import '\(pattern)': publishing '\(channel)' on this host from sequence \(publisher.lastSequence + 1)")
        return publisher
    }
}

extension ShmBusError {
    /// Whether the channel's writer refused the chunk itself: `invalidArgument` from the
    /// segment (`capacityExceeded`: larger than the segment can hold; a key or
    /// attributes it cannot store). The same chunk would be refused again; a registry
    /// or bus that is down is not this.
    fileprivate var refusesTheChunk: Bool {
        guard code == .invalidArgument, case .segment = cause else { return false }
        return true
    }
}
