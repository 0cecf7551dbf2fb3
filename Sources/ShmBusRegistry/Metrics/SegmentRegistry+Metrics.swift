/// What a scrape of the metrics endpoint reads from the registry: every channel's
/// statistics (the properties of docs/PROTOCOL.md, "Statistics", computed the same
/// way) and the registry's totals, in one turn of the actor so that they agree.
extension SegmentRegistry {
    struct ChannelSample: Sendable {
        var name: String
        var figures: Figures
        var segments: Int
        var generation: UInt64
        var capacity: UInt64
    }

    struct MetricsSample: Sendable {
        var channels: [ChannelSample]
        var segmentCount: Int
        var totalBytes: UInt64
        var watchers: Int
    }

    /// Like a read of the properties, this samples a channel's rates again when its last
    /// sample is a second old or more (see ``figures(of:force:)``).
    func metricsSample() -> MetricsSample {
        var out: [ChannelSample] = []
        for name in channels.keys.sorted() {
            guard let figures = figures(of: name), let channel = channels[name] else { continue }
            let held = channel.segments.compactMap { segments[$0] }
            out.append(ChannelSample(
                name: name, figures: figures, segments: held.count,
                generation: currentGeneration(of: name),
                capacity: held.reduce(0) { $0 &+ $1.file.capacity }))
        }
        return MetricsSample(channels: out, segmentCount: segments.count, totalBytes: totalBytes, watchers: watchers.count)
    }
}
