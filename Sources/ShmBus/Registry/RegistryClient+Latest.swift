import DBus
import SharedSegments

extension RegistryClient {
    /// The newest live chunk with `key` in `channel`, as a zero-copy view into its
    /// segment: the one-call read for a channel used as a store of named values
    /// ("the latest screenshot").
    ///
    /// The registry says which segment holds the chunk (`Lookup`); the chunk itself is
    /// found by reading that segment here, with every record validated, rather than by
    /// trusting the offsets on the bus. The chunk keeps its mapping alive after this
    /// client and its connection are gone.
    ///
    /// - Throws: ``ShmBusError`` `NotFound` when the channel or key does not exist or
    ///   the chunk was replaced or expired in between, `BadSegment` for a segment that
    ///   fails validation.
    public func latest(channel: String, key: String) async throws(ShmBusError) -> Chunk {
        var found = try await lookup(channel: channel, key: key)
        let opened: (fd: UnixFileDescriptor, info: Registry1.SegmentInfoDictionary)
        do {
            opened = try await openSegment(found.segment)
        } catch where error.code == .notFound {
            // Collected between the two calls: look once more, in its successor.
            found = try await lookup(channel: channel, key: key)
            opened = try await openSegment(found.segment)
        }
        let chunk: Chunk?
        do throws(SegmentError) {
            let reader = try await reader(of: opened.fd, writer: opened.info.owner)
            // Memory reused since the lookup holds another generation now.
            guard reader.header.name == found.segment else {
                throw SegmentError(.reclaimed, "its memory holds segment \(reader.header.name) now")
            }
            chunk = try reader.latest(key: key)
        } catch {
            throw ShmBusError(error, context: "segment \(found.segment)")
        }
        guard let chunk else {
            throw .notFound("the chunk with key '\(key)' in channel '\(channel)' is gone (replaced or expired)")
        }
        return chunk
    }

    /// A reader of `fd`; for a segment whose memory its writer reuses, with a lease of
    /// its own registered at the writer first (`Publisher1.Lease`) and anchored to
    /// this connection, which the chunks read keep open.
    private func reader(of fd: UnixFileDescriptor, writer: String?) async throws(SegmentError) -> SegmentReader {
        do {
            return try SegmentReader(fd: fd)
        } catch where error.kind == .leaseRequired {
            guard let writer, !writer.isEmpty else { throw error }
            let lease = try ReadLease(keeping: connection)
            do {
                try await ShmBusProtocol.publisher(writer, on: connection).lease(page: lease.fileDescriptor)
            } catch {
                throw SegmentError(.reclaimed, "the segment's writer did not take a lease: \(error)")
            }
            return try SegmentReader(fd: fd, lease: lease, writer: writer)
        }
    }
}

extension Subscriber {
    /// The newest live chunk with `key` in `channel` on `bus`, read once without
    /// subscribing (see ``RegistryClient/latest(channel:key:)``).
    ///
    /// ```swift
    /// let shot = try await Subscriber.latest(channel: "screenshots", key: "latest")
    /// let png = shot.data   // no copy: the Data holds the mapping
    /// ```
    public static func latest(
        channel: String, key: String, on bus: DBusConnection.Bus = .session
    ) async throws(ShmBusError) -> Chunk {
        let registry = try await RegistryClient.connect(to: bus)
        let chunk: Chunk
        do {
            chunk = try await registry.latest(channel: channel, key: key)
        } catch {
            registry.connection.close()
            throw error
        }
        // A leased chunk keeps the connection its lease was registered on (the
        // publisher forgets the lease when it leaves the bus); it closes with the chunk.
        if !chunk.isLeased { registry.connection.close() }
        return chunk
    }
}
