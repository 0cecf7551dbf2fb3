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
        let fd: UnixFileDescriptor
        do {
            fd = try await openSegment(found.segment).fd
        } catch where error.code == .notFound {
            // Collected between the two calls: look once more, in its successor.
            found = try await lookup(channel: channel, key: key)
            fd = try await openSegment(found.segment).fd
        }
        let chunk: Chunk?
        do throws(SegmentError) {
            chunk = try SegmentReader(fd: fd).latest(key: key)
        } catch {
            throw ShmBusError(error, context: "segment \(found.segment)")
        }
        guard let chunk else {
            throw .notFound("the chunk with key '\(key)' in channel '\(channel)' is gone (replaced or expired)")
        }
        return chunk
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
        defer { registry.connection.close() }
        return try await registry.latest(channel: channel, key: key)
    }
}
