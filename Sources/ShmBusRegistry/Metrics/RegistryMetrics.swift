import DBus
import Foundation
import Locking
import Prometheus
import ShmBusSystem

/// The daemon's metrics, rendered as Prometheus text by swift-prometheus
/// (docs/OBSERVABILITY.md, "Metrics"): every channel's statistics, the registry's
/// calls by method and errors by D-Bus error name (counted as they happen), and the
/// process's descriptors and memory (read at each scrape).
///
/// Its own collector registry, not swift-metrics' process-wide `MetricsSystem`: a
/// daemon's figures must not depend on what else in the process bootstrapped what
/// (registries in one test process, a library's counters).
public final class RegistryMetrics: Sendable {
    let collectors = PrometheusCollectorRegistry()
    /// The series of each channel seen at the last scrape, so that a channel gone from
    /// the registry is gone from the text too.
    private let channels = Lock<[String: ChannelSeries]>([:])

    public init() {}

    static func name(_ subsystem: String?, _ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "shmbus", subsystem: subsystem, metricName: metric, unitName: unit, helpText: help)
    }

    // Computed: swift-prometheus' descriptor is not Sendable, so it cannot be a stored static.
    static var calls: MetricNameDescriptor {
        name("registry", "calls", "total", "Calls of each org.shmbus.Registry1 method the registry answered.")
    }
    static var errors: MetricNameDescriptor {
        name("registry", "errors", "total", "Registry1 calls answered with an error, by method and D-Bus error name.")
    }

    /// `interface` with each method's handler counting its calls and its errors. Calls
    /// the bus layer refuses before any handler runs (an unknown method, a wrong
    /// signature) are not counted: they never reach the registry.
    func counting(_ interface: DBusInterface) -> DBusInterface {
        var counted = interface
        for index in counted.methods.indices {
            guard let handler = counted.methods[index].handler else { continue }
            let method = counted.methods[index].name
            let calls = collectors.makeCounter(descriptor: Self.calls, labels: [("method", method)])
            let collectors = collectors
            counted.methods[index].handler = { call in
                calls.increment()
                do {
                    return try await handler(call)
                } catch {
                    collectors.makeCounter(descriptor: Self.errors, labels: [("method", method), ("error", Self.errorName(of: error))])
                        .increment()
                    throw error
                }
            }
        }
        return counted
    }

    /// The name the error reply carries: what the bus layer will send for `error`.
    static func errorName(of error: any Error) -> String {
        if let error = error as? DBusError { return error.name }
        if let error = error as? any DBusErrorConvertible { return error.dbusError.name }
        return DBusError.failedName
    }

    /// The exposition text of `sample` and of this process now.
    func render(_ sample: SegmentRegistry.MetricsSample) -> String {
        channels.withLock { series in
            var gone = Set(series.keys)
            for channel in sample.channels {
                gone.remove(channel.name)
                if series[channel.name] == nil { series[channel.name] = ChannelSeries(channel.name, in: collectors) }
                series[channel.name]?.update(channel)
            }
            for name in gone { series.removeValue(forKey: name)?.unregister(from: collectors) }
        }
        gauge("registry", "channels", "", "Channels in the registry.").set(Double(sample.channels.count))
        gauge("registry", "segments", "", "Segments in the registry.").set(Double(sample.segmentCount))
        gauge("registry", "capacity", "bytes", "Capacity of every segment, headers included.").set(Double(sample.totalBytes))
        gauge("registry", "watchers", "", "Connections watching statistics (WatchStatistics).").set(Double(sample.watchers))
        gauge("registry", "segment_descriptors", "", "Descriptors the registry holds for segments and doorbells.")
            .set(Double(DescriptorBudget.shared.held))
        let process = ProcessFigures.now()
        plainGauge("process_open_fds", "Open file descriptors.").set(Double(process.openDescriptors))
        plainGauge("process_max_fds", "RLIMIT_NOFILE's soft limit.").set(Double(process.descriptorLimit))
        plainGauge("process_resident_memory_bytes", "Resident memory (RSS).").set(Double(process.residentBytes))
        return collectors.emitToString()
    }

    private func gauge(_ subsystem: String, _ metric: String, _ unit: String, _ help: String) -> Gauge {
        collectors.makeGauge(descriptor: Self.name(subsystem, metric, unit, help))
    }

    /// The Prometheus client libraries' standard process metrics, under their usual names.
    private func plainGauge(_ name: String, _ help: String) -> Gauge {
        collectors.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }
}

/// What the kernel says of this process.
struct ProcessFigures {
    var openDescriptors = 0
    var descriptorLimit = 0
    var residentBytes = 0

    static func now() -> ProcessFigures {
        var figures = ProcessFigures()
        // The listing itself holds one descriptor, of /proc/self/fd.
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            figures.openDescriptors = max(0, entries.count - 1)
        }
        figures.descriptorLimit = (try? FileDescriptorLimit.current().soft) ?? 0
        // statm: size, resident, … in pages.
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { figures.residentBytes = pages * sysconf(Int32(_SC_PAGESIZE)) }
        }
        return figures
    }
}
