import Prometheus

/// One channel's series in the exposition text, labelled `channel`: the statistics of
/// docs/PROTOCOL.md, "Statistics", under the names docs/OBSERVABILITY.md lists.
/// Published chunks and bytes and collections are counters (Prometheus' `rate()` makes
/// them per second); the rest are gauges. Used under ``RegistryMetrics``' lock.
struct ChannelSeries {
    private let publishedChunks: Counter
    private let publishedBytes: Counter
    private let collections: Counter
    private let gauges: [(Gauge, Figure)]
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
        gauges = Figure.allCases.map { (gauge($0.metric, $0.unit, $0.help), $0) }
    }

    mutating func update(_ sample: SegmentRegistry.ChannelSample) {
        let figures = sample.figures
        Self.advance(publishedChunks, from: counted.chunks, to: figures.publishedChunks)
        Self.advance(publishedBytes, from: counted.bytes, to: figures.publishedBytes)
        Self.advance(collections, from: counted.collections, to: figures.collections)
        counted = (figures.publishedChunks, figures.publishedBytes, figures.collections)
        for (gauge, figure) in gauges { gauge.set(figure.value(in: sample)) }
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

    /// The gauges of a channel: name, unit, help, and where the value comes from.
    enum Figure: CaseIterable {
        case chunkRate, byteRate, committed, live, capacity, segments, generation, readers, timeToLive

        var metric: String {
            switch self {
            case .chunkRate: "chunks_per_second"
            case .byteRate: "bytes_per_second"
            case .committed: "committed"
            case .live: "live"
            case .capacity: "capacity"
            case .segments: "segments"
            case .generation: "generation"
            case .readers: "readers"
            case .timeToLive: "time_to_live"
            }
        }

        var unit: String {
            switch self {
            case .committed, .live, .capacity: "bytes"
            case .timeToLive: "seconds"
            default: ""
            }
        }

        var help: String {
            switch self {
            case .chunkRate: "ChunkRate: chunks per second over the registry's last sample."
            case .byteRate: "ByteRate: record bytes per second over the registry's last sample."
            case .committed: "Committed record bytes of the active segments."
            case .live: "The current segment's live bytes."
            case .capacity: "Capacity of the channel's segments, headers included."
            case .segments: "Segments the channel holds."
            case .generation: "The current segment's generation."
            case .readers: "Connections handed descriptors by OpenSegment, still on the bus."
            case .timeToLive: "Seconds until a persistent channel whose owner left is removed; 0 when not counting down."
            }
        }

        func value(in sample: SegmentRegistry.ChannelSample) -> Double {
            switch self {
            case .chunkRate: sample.figures.chunkRate
            case .byteRate: sample.figures.byteRate
            case .committed: Double(sample.figures.committedBytes)
            case .live: Double(sample.figures.liveBytes)
            case .capacity: Double(sample.capacity)
            case .segments: Double(sample.segments)
            case .generation: Double(sample.generation)
            case .readers: Double(sample.figures.readerCount)
            case .timeToLive: Double(sample.figures.timeToLive)
            }
        }
    }
}
