import Foundation

/// What one refresh shows, as a table or as one line of `--json`
/// (docs/OBSERVABILITY.md, "shmbus top --json").
struct TopReport: Encodable {
    /// Seconds since the Unix epoch.
    var time: Double
    /// Seconds the rates cover: the time between this poll and the one before.
    var interval: Double?
    var sort: TopSort
    var prefix: String
    /// Every channel and segment in the registry, whatever the prefix shows.
    var channelCount: Int
    var segmentCount: Int
    var unreadableObjects: Int
    /// The channels the prefix shows, in the sort's order.
    var channels: [TopChannel]

    init(_ snapshot: TopSnapshot, view: TopView) {
        time = snapshot.time
        interval = snapshot.interval
        sort = view.sort
        prefix = view.prefix
        channelCount = snapshot.channels.count
        segmentCount = snapshot.segmentCount
        unreadableObjects = snapshot.unreadableObjects
        channels = view.rows(of: snapshot)
    }

    /// The summary above the table.
    var summary: String {
        let chunks = channels.compactMap(\.chunkRate).reduce(0, +)
        let bytes = channels.compactMap(\.byteRate).reduce(0, +)
        var parts = [
            "\(channelCount) channel\(channelCount == 1 ? "" : "s"), \(segmentCount) segment\(segmentCount == 1 ? "" : "s")",
            "shown: \(channels.count), \(Self.rate(chunks)) chunks/s, \(Self.byteRate(bytes))",
            "sort: \(sort.rawValue)",
        ]
        if !prefix.isEmpty { parts.append("prefix: \(Self.printable(prefix))") }
        if unreadableObjects > 0 { parts.append("\(unreadableObjects) objects not understood") }
        return parts.joined(separator: " · ")
    }

    /// The table of ``channels``: every string that came from the bus or from /proc is
    /// made printable first, so that no name can move the cursor or retitle a terminal.
    var table: [String] {
        var table = TextTable(
            "CHANNEL", "CHUNKS/S", "BYTES/S", "PUBLISHED", "LIVE", "COMMITTED", "SIZE", "SEGS", "GEN", "GC", "READERS", "PUBLISHER")
        table.rightAligned = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        for c in channels {
            table.add([
                Self.printable(c.name), c.chunkRate.map(Self.rate) ?? "-", c.byteRate.map(Self.byteRate) ?? "-",
                "\(c.publishedChunks)", ByteCount.human(c.liveBytes), ByteCount.human(c.committedBytes), ByteCount.human(c.capacity),
                "\(c.segments)", "\(c.generation)", "\(c.collections)", "\(c.readers)", Self.publisher(c),
            ])
        }
        return table.lines
    }

    /// `alice 4242 camera-publisher`, `1000 4242`, or `- (ttl 30 s)` for a channel
    /// whose publisher left.
    static func publisher(_ c: TopChannel) -> String {
        guard let user = c.publisherUser else { return c.timeToLive > 0 ? "- (ttl \(c.timeToLive) s)" : "-" }
        var parts = [printable(c.publisherUserName ?? "\(user)")]
        if let process = c.publisherProcess { parts.append("\(process)") }
        if let command = c.publisherCommand { parts.append(printable(command)) }
        return parts.joined(separator: " ")
    }

    static func rate(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }

    static func byteRate(_ value: Double) -> String {
        ByteCount.human(UInt64(max(0, min(value, Double(UInt64.max / 2))))) + "/s"
    }

    /// Printable ASCII only; anything else becomes `?`.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { (0x20...0x7E).contains($0.value) ? $0 : "?" }))
    }
}
