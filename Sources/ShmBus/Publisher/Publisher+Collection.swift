import SharedSegments

/// Garbage collection from the publisher's side: the manual trigger, and handing each
/// new generation to the registrar.
extension Publisher {
    /// Collects garbage now: copies the live chunks into a new generation.
    public func collectGarbage() throws(ShmBusError) {
        try writer.withLock { writer throws(ShmBusError) in
            let rotation: ChannelWriter.Rotation
            do throws(SegmentError) {
                rotation = try writer.collectGarbage()
            } catch {
                throw ShmBusError(error, context: "channel '\(channel)'")
            }
            queue(rotation, of: writer)
        }
    }

    /// Hands a new generation to the registrar (or retires it when the registrar has
    /// stopped), with the writer locked, right where the rotation happened: so that no
    /// commit into the new generation can see no rotation pending and announce it
    /// before it is registered. Every rotation is a collection.
    func queue(_ rotation: ChannelWriter.Rotation, of writer: ChannelWriter) {
        if !registrar.enqueue(rotation) {
            writer.retire(rotation)
        } else if writer.reusesMemory {
            // Retired at once, not after the registry has the new generation: readers
            // with a lease find it in memory they mapped already, and the others ask
            // this publisher (Publisher1.OpenSegment) until the registry has it. A
            // registration round trip on every rotation is what made reuse slower than
            // new memory for small chunks (docs/BENCHMARKS.md, "Reused memory").
            writer.retire(rotation)
        }
        metrics.collections.increment()
        lastCollection.withLock { $0 = .now }
    }
}
