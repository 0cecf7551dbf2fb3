import DBus
import SharedSegments
import ShmBusProtocol

/// A segment the registry holds: the descriptor it was given (checked), reopened
/// read-only, and mapped read-only for `Lookup` and the live properties. The registry
/// never writes into it.
final class InspectedSegment: Sendable {
    /// Read-only descriptor (O_RDONLY through /proc/self/fd), handed out by OpenSegment.
    private let descriptor: UnixFileDescriptor
    let reader: SegmentReader
    /// Its descriptors' share of the ``DescriptorBudget``.
    private let charge: DescriptorBudget.Charge

    var name: String { reader.name }
    var channel: String { reader.header.channel }
    var generation: UInt64 { reader.header.generation }
    var capacity: UInt64 { reader.header.capacity }

    /// Checks `fd` (memfd, four seals, size, header, channel) and maps it read-only,
    /// within the ``DescriptorBudget`` unless `mayExceedBudget`.
    init(_ fd: UnixFileDescriptor, expectedChannel: String, mayExceedBudget: Bool = false) throws(ShmBusError) {
        // Room for itself and a doorbell; the doorbell's share is taken when the
        // segment is exported with one (SegmentRegistry.exportSegment).
        charge = try DescriptorBudget.shared.charge(room: 2, force: mayExceedBudget)
        let readOnly: UnixFileDescriptor
        do {
            try Memfd.checkSealed(fd, required: Memfd.segmentSeals)
            readOnly = try Memfd.reopenReadOnly(fd)
        } catch {
            throw Self.map(error)
        }
        descriptor = readOnly
        do {
            // Without a lease: the registry reads the header and the counters, and
            // records only to see whether one is live, all of it validated; it never
            // hands out bytes, so memory reused under it misleads nobody.
            reader = try SegmentReader(fd: readOnly, options: .headersOnly)
        } catch {
            throw Self.map(error)
        }
        guard reader.header.channel == expectedChannel else {
            throw .badSegment("the segment's header names channel '\(reader.header.channel)', not '\(expectedChannel)'")
        }
        do {
            _ = try reader.liveState()
        } catch {
            throw Self.map(error)
        }
    }

    /// Checks a writer's doorbell: a memfd sealed against resizing, one page at least.
    static func checkDoorbell(_ fd: UnixFileDescriptor) throws(ShmBusError) {
        do {
            // Opened only to check it; the message's descriptor is shared, not copied.
            _ = try Doorbell.open(fd)
        } catch {
            // Out of descriptors is the registry's condition, not the option's fault.
            let mapped = map(error)
            throw mapped.code == .quotaExceeded ? mapped : .invalidArgument("option 'doorbell': \(error.message)")
        }
    }

    static func map(_ error: SegmentError) -> ShmBusError {
        switch error.kind {
        case .system(let errno) where errno == .tooManyOpenFiles || errno == .tooManyOpenFilesInSystem:
            // Not the segment's fault: the registry (or the system) ran out of descriptors.
            .quotaExceeded("the registry cannot open another descriptor (\(error.message)); unregister segments, or raise its limit")
        case .notMemfd, .invalidArgument, .leaseRequired: .invalidArgument(error.message)
        case .reclaimed: .notFound(error.message)
        case .notSealed: .notSealed(error.message)
        case .tooSmall, .badHeader, .badRecord, .badDoorbell, .capacityExceeded, .retired: .badSegment(error.message)
        case .system: .badSegment(error.message)
        }
    }

    /// The read-only descriptor handed to clients (`OpenSegment`): shared, since
    /// libdbus sends each reply a duplicate of its own.
    var readOnlyDescriptor: UnixFileDescriptor { descriptor }

    /// Whether any committed chunk is live at `now` (CLOCK_REALTIME ns): neither
    /// obsolete nor expired. A segment whose records stop validating counts as live:
    /// removing data because of a read error is not this check's business.
    func hasLiveChunk(now: UInt64) -> Bool {
        guard let live = try? reader.liveState() else { return true }
        var offset = UInt64(SegmentLayout.headerSize)
        while offset < live.committedEnd {
            guard let chunk = try? reader.chunk(at: offset, limit: live.committedEnd) else { return true }
            if chunk.isLive(at: now) { return true }
            offset = chunk.recordEnd
        }
        return false
    }

    /// Record bytes a collection copied into this segment: the records at its start
    /// whose sequences are at most its base sequence (copies come before any append,
    /// FORMAT.md "Garbage collection"). Read when it is registered, for statistics.
    func copiedBytes() -> UInt64 {
        guard let limit = try? reader.liveState().committedEnd else { return 0 }
        var offset = UInt64(SegmentLayout.headerSize)
        while offset < limit, let chunk = try? reader.chunk(at: offset, limit: limit), chunk.sequence <= reader.header.baseSequence {
            offset = chunk.recordEnd
        }
        return offset - UInt64(SegmentLayout.headerSize)
    }

    struct LiveState {
        var committedBytes: UInt64 = 0
        var chunkCount: UInt64 = 0
        var lastSequence: UInt64 = 0
        var liveBytes: UInt64 = 0
    }

    /// The segment's counters now; zeros if its header has become invalid.
    func liveState() -> LiveState {
        guard let state = try? reader.liveState() else { return LiveState() }
        return LiveState(
            committedBytes: state.committedBytes, chunkCount: state.liveChunks, lastSequence: state.lastSequence,
            liveBytes: state.liveBytes)
    }

    /// The newest live chunk with `key`, read from the segment (validated).
    func latest(key: String) throws(ShmBusError) -> ChunkLocation? {
        do {
            guard let chunk = try reader.latest(key: key) else { return nil }
            return ChunkLocation(
                offset: chunk.payloadOffset, length: UInt64(chunk.count), sequence: chunk.sequence, timestamp: chunk.timestamp,
                expiry: chunk.expiry, attributes: chunk.attributes)
        } catch {
            throw Self.map(error)
        }
    }
}
