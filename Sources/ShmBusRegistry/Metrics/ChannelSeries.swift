import Prometheus

/// One channel's series in the exposition text, labelled `channel`: the statistics of
/// docs/PROTOCOL.md, "Statistics", under the names docs/OBSERVABILITY.md lists.
/// Published chunks and bytes and collections are counters (Prometheus' `rate()` makes
/// them per second); the rest are gauges. Used under ``RegistryMetrics``' lock.
struct ChannelSeries {
    private let publishedChunks: Counter
    private let publishedBytes: Counter
    private let collections: Counter
    private let gauges: [(Gauge, (SegmentRegistry.ChannelSample) -> Double)]
    /// What the counters were brought to at the last scrape: a counter only goes up by
    /// what the registry's count went up since.
    private var counted: (chunks: UInt64, bytes: UInt64, collections: UInt64) = (0, 0, 0)

    init(_ channel: String, in collectors: PrometheusCollectorRegistry) {
        let labels = [("channel", channel)]
        func counter(_ metric: String, _ help: String) -> Counter {
            collectors.makeCounter(descriptor: RegistryMetrics.name("channel", metric, "total", help), labels: labels)
        }
        func gauge(_ metric: String, _ unit: String, _ help: String) -> Gauge {
            collectors.makeGauge(descriptor: RegistryMetrics.name("channel", metric, unit, help), labels: labels)
        }
        publishedChunks = counter("published_chunks", "Chunks committed since the registry first saw the channel.")
        publishedBytes = counter("published_bytes", "Record bytes committed since the registry first saw the channel.")
        collections = counter("collections", "Generations replaced since the registry first saw the channel.")
        gauges = [
            (gauge("chunks_per_second", "", "ChunkRate: chunks per second over the registry's last sample."), { $0.figures.chunkRate }),
            (gauge("bytes_per_second", "", "ByteRate: record bytes per second over the registry's last sample."), { $0.figures.byteRate }),
            (gauge("committed", "bytes", "Committed record bytes of the active segments."), { Double($0.figures.committedBytes) }),
            (gauge("live", "bytes", "The current segment's live bytes."), { Double($0.figures.liveBytes) }),
            (gauge("capacity", "bytes", "Capacity of the channel's segments, headers included."), { Double($0.capacity) }),
            (gauge("segments", "", "Segments the channel holds."), { Double($0.segments) }),
            (gauge("generation", "", "The current segment's generation."), { Double($0.generation) }),
            (gauge("readers", "", "Connections handed descriptors by OpenSegment, still on the bus."), { Double($0.figures.readerCount) }),
            (gauge("time_to_live", "seconds", "Seconds until a persistent channel whose owner left is removed; 0 when not counting down."), {
                Double($0.figures.timeToLive)
            }),
        ]
    }

    mutating func update(_ sample: SegmentRegistry.ChannelSample) {
        let figures = sample.figures
        Self.advance(publishedChunks, from: counted.chunks, to: figures.publishedChunks)
        Self.advance(publishedBytes, from: counted.bytes, to: figures.publishedBytes)
        Self.advance(collections, from: counted.collections, to: figures.collections)
        counted = (figures.publishedChunks, figures.publishedBytes, figures.collections)
        for (gauge, value) in gauges { gauge.set(value(sample)) }
    }

    /// A count that went back (the registry counts a channel taken back from the keeper
    /// anew) starts the counter again, which Prometheus reads as a reset.
    private static func advance(_ counter: Counter, from before: UInt64, to now: UInt64) {
        if now < before { counter.reset() }
        counter.increment(by: Int64(clamping: now < before ? now : now - before))
    }

    func unregister(from collectors: PrometheusCollectorRegistry) {
        for counter in [publishedChunks, publishedBytes, collections] { collectors.unregisterCounter(counter) }
        for (gauge, _) in gauges { collectors.unregisterGauge(gauge) }
    }
}
