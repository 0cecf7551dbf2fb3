import CoreMetrics

/// The library's own counters, through swift-metrics (docs/OBSERVABILITY.md, "The
/// library's counters"): an application that bootstraps a backend
/// (`MetricsSystem.bootstrap`) sees them with a `channel` dimension; one that does not
/// pays a call into swift-metrics' no-op handler per publish.
///
/// The counters are made when a publisher or subscriber opens, so a backend bootstrapped
/// later sees only those opened after it (swift-metrics binds a counter to the factory
/// in place when it is created).
struct PublisherMetrics: Sendable {
    /// Chunks committed by this process: one per `publish`, one per chunk of a batch.
    let chunks: Counter
    /// Their payload bytes (not the records' headers and padding).
    let bytes: Counter
    /// Generations this process started by garbage collection.
    let collections: Counter

    init(channel: String) {
        let dimensions = [("channel", channel)]
        chunks = Counter(label: "shmbus_published_chunks_total", dimensions: dimensions)
        bytes = Counter(label: "shmbus_published_bytes_total", dimensions: dimensions)
        collections = Counter(label: "shmbus_collections_total", dimensions: dimensions)
    }
}

struct SubscriberMetrics: Sendable {
    /// Times a subscriber fell behind a collection (each `.gap` event).
    let gaps: Counter
    /// The chunks those gaps skipped.
    let missed: Counter

    init(channel: String) {
        let dimensions = [("channel", channel)]
        gaps = Counter(label: "shmbus_subscriber_gaps_total", dimensions: dimensions)
        missed = Counter(label: "shmbus_subscriber_missed_chunks_total", dimensions: dimensions)
    }
}
