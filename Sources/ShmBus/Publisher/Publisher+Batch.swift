import Foundation
import SharedSegments

/// Many small chunks, one commit.
///
/// `publish` commits every chunk by itself: five header stores, a look at the
/// doorbell and an announcement, which for a 64-byte chunk cost more than the chunk.
/// A batch writes its chunks one after another under one hold of the writer's lock
/// and commits them together when the closure returns: readers see all of them at
/// once, the doorbell rings at most once, and one `Committed` range covers them.
///
/// ```swift
/// let published = try publisher.publishBatch { batch in
///     for sample in samples {
///         try batch.append(length: 64) { sample.write(to: $0) }
///     }
/// }
/// ```
///
/// The closure runs with the publisher's writer locked, as `publish`'s fill closure
/// does: it must not call into the same publisher (the lock is not recursive), and a
/// chunk's fill must not append to the batch (that throws).
///
/// Chunks of a batch share one timestamp. A batch that outgrows the segment is
/// committed in parts (the part so far, then a collection, as for any chunk that does
/// not fit); every chunk appended is published, in order, even if the closure throws
/// afterwards. Readers wait for the whole batch, so bound its size by the latency your
/// readers accept.
extension Publisher {
    /// The chunks of one ``Publisher/publishBatch(_:)``, appended in order. It exists only
    /// inside the closure: it cannot be copied, and the closure only borrows it.
    public struct Batch: ~Copyable {
        let publisher: Publisher
        /// The publisher's writer, locked by `publishBatch` for as long as the batch
        /// lives: the batch cannot be copied or consumed, the closure only borrows it and
        /// returns before the lock is released, and the batch is not `Sendable`.
        let writer: ChannelWriter
        let tally = Tally()

        /// What was appended, kept by reference so that `append` need not be
        /// `mutating`: the closure borrows the batch.
        final class Tally {
            // Checked statically: the batch that owns it is borrowed by one closure on
            // one thread (see `writer`), and dynamic checks cost a few percent per chunk.
            @exclusivity(unchecked) var filling = false
            @exclusivity(unchecked) var count = 0
            @exclusivity(unchecked) var bytes = 0
            @exclusivity(unchecked) var first: UInt64?
            @exclusivity(unchecked) var last: UInt64 = 0
        }

        /// How many chunks were appended.
        public var count: Int { tally.count }

        /// Appends a chunk of `length` bytes written in place by `fill` (in the shared
        /// segment, zero-copy; it must write the whole buffer and not throw).
        public func append(
            key: String = "", length: Int, expiresIn: Duration? = nil, attributes: ChunkAttributes = ChunkAttributes(),
            _ fill: (UnsafeMutableRawBufferPointer) -> Void
        ) throws(ShmBusError) {
            guard length >= 0 else { throw .invalidArgument("a chunk's length cannot be negative (\(length))") }
            // A fill that appends to its own batch would have the chunk it fills committed
            // (and perhaps copied by a collection) before its bytes are written.
            guard !tally.filling else { throw .invalidArgument("a chunk cannot be appended from inside another chunk's fill") }
            let reserved: ChannelWriter.BatchReservation
            do throws(SegmentError) {
                reserved = try writer.reserveInBatch(
                    length: UInt64(length), key: key, expiresAt: expiresIn.map(RealtimeClock.after) ?? 0, attributes: attributes)
            } catch {
                if let part = writer.takeUnannouncedBatch() { publisher.announce(part) }
                throw ShmBusError(error, context: "channel '\(publisher.channel)'")
            }
            if reserved.hasEvents {
                if let part = reserved.committedFirst { publisher.announce(part) }
                // Queued while the writer is locked, as `publish` does.
                if let rotation = reserved.rotation { publisher.queue(rotation, of: writer) }
            }
            tally.filling = true
            fill(reserved.buffer)
            tally.filling = false
            tally.count += 1
            tally.bytes += length
            tally.last = writer.batchLastSequence
            if tally.first == nil { tally.first = tally.last }
        }

        /// Appends a copy of `bytes`.
        public func append(
            _ bytes: some ContiguousBytes, key: String = "", expiresIn: Duration? = nil, attributes: ChunkAttributes = ChunkAttributes()
        ) throws(ShmBusError) {
            // `withUnsafeBytes` rethrows untyped errors: the typed one goes out in a Result.
            let result = bytes.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
                Result { () throws(ShmBusError) in
                    try append(key: key, length: source.count, expiresIn: expiresIn, attributes: attributes) { target in
                        if source.count > 0 { target.copyMemory(from: source) }
                    }
                }
            }
            try result.get()
        }
    }

    /// What a batch published: its chunks' sequences, `first...last`, in order.
    public struct PublishedBatch: Sendable, Hashable {
        public var count: Int
        /// The sequences of the first and the last chunk; nil for an empty batch.
        public var sequences: ClosedRange<UInt64>?
    }

    /// Publishes the chunks `body` appends with one commit (see ``Batch``). Errors of
    /// `body` are rethrown as they are, after what it appended is published.
    @discardableResult
    public func publishBatch<E: Error>(_ body: (borrowing Batch) throws(E) -> Void) throws(E) -> PublishedBatch {
        let outcome = writer.withLock { writer -> (PublishedBatch, ChannelWriter.CommittedBatch?, E?, ringOwed: Bool, bytes: Int) in
            let batch = Batch(publisher: self, writer: writer)
            var failure: E?
            do throws(E) {
                try body(batch)
            } catch {
                failure = error
            }
            let committed = writer.commitBatch()
            let tally = batch.tally
            let summary = PublishedBatch(count: tally.count, sequences: tally.first.map { $0...tally.last })
            return (summary, committed, failure, writer.ringOwed, tally.bytes)
        }
        if outcome.ringOwed { ringHeldBackLater() }
        metrics.chunks.increment(by: outcome.0.count)
        metrics.bytes.increment(by: outcome.bytes)
        if let committed = outcome.1 { announce(committed) }
        if let failure = outcome.2 { throw failure }
        return outcome.0
    }

    /// Announces a batch's commit, as `publish` announces one chunk's.
    fileprivate func announce(_ committed: ChannelWriter.CommittedBatch) {
        // A new generation is announced once it is registered (see the registrar).
        guard !registrar.isRotationPending else { return }
        notifier.committed(
            segment: committed.segmentName, generation: committed.generation, startOffset: committed.recordOffset,
            endOffset: committed.recordEnd, firstSequence: committed.firstSequence, lastSequence: committed.lastSequence)
    }
}
