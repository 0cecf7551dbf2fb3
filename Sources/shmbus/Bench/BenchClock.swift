import CShmBusBench
import ShmBusSystem
import Foundation
import Glibc
import DBus
import Histogram

/// CLOCK_MONOTONIC nanoseconds: one clock for every process of a benchmark run.
enum BenchClock {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// The checksum every benchmark uses to prove each byte was read, at memory speed
/// (the same function on every path, so it costs each path the same).
func benchChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    shmbus_sum64(bytes.baseAddress, bytes.count)
}

/// Percentiles of nanosecond samples (HdrHistogram, three significant digits).
struct Samples: Encodable, Sendable {
    var count: Int
    var p50: Double
    var p99: Double
    var min: Double
    var max: Double
    var mean: Double
    /// The unit of the figures above.
    var unit: String

    init(nanoseconds values: [UInt64], unit: String = "µs") {
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
        for value in values { _ = histogram.record(Swift.max(value, 1)) }
        let scale: Double = unit == "ms" ? 1e6 : unit == "s" ? 1e9 : 1e3
        count = values.count
        p50 = Double(histogram.valueAtPercentile(50)) / scale
        p99 = Double(histogram.valueAtPercentile(99)) / scale
        min = Double(histogram.min) / scale
        max = Double(histogram.max) / scale
        mean = histogram.mean / scale
        self.unit = unit
    }

    var summary: String { String(format: "p50 %.3g %@, p99 %.3g %@", p50, unit, p99, unit) }
}

/// Anonymous (private) resident memory of this process, from /proc/self/status.
func residentAnonymousBytes() -> UInt64 {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
        let kb = line.split(separator: " ").compactMap { UInt64($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// The machine a run happened on.
struct MachineInfo: Encodable, Sendable {
    var cores: Int
    var memoryGiB: Double
    var kernel: String
    var cpu: String
    var busDaemon: String
    var build: String
    /// The transparent-huge-page mode for shared memory (the bracketed word of
    /// /sys/kernel/mm/transparent_hugepage/shmem_enabled): whether segments can get
    /// huge pages, which decides what a reader pays to map a large chunk.
    var shmemHugePages: String

    static func current() async -> MachineInfo {
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var busDaemon = "unknown"
        if let child = try? ChildProcess("dbus-daemon", ["--version"], stdout: .pipe, stderr: .null),
            let output = try? await child.collectOutput().stdout
        {
            busDaemon = String(decoding: output, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? busDaemon
            _ = await child.exit()
        }
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        let shmemHugePages = (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/shmem_enabled", encoding: .utf8))
            .flatMap { $0.split(separator: "[").dropFirst().first?.split(separator: "]").first.map(String.init) } ?? "unavailable"
        return MachineInfo(
            cores: ProcessInfo.processInfo.activeProcessorCount,
            memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30), kernel: kernel, cpu: cpu,
            busDaemon: busDaemon, build: build, shmemHugePages: shmemHugePages)
    }
}
