import Foundation
import Glibc
import TestSupport
import Testing

/// The registry's own account of the calls it served
/// (`shmbus_registry_call_duration_seconds`, docs/OBSERVABILITY.md): for callers with
/// nothing else pending, each phase's call count and the bucket bound under which 99%
/// of them fell. What a caller waited beyond these bounds it waited outside the daemon.
struct ServedCallPhases {
    static let phases = ["loop", "queued", "handler", "reply"]

    /// A loopback port nobody listens on now, for `--metrics` (the kernel picks it; it
    /// is closed again before the daemon binds it, so another process could take it in
    /// between, which on a test machine it does not).
    static func freePort() throws -> UInt16 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw SetupFailure("socket: errno \(errno)") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(socket, generic, length) == 0 && getsockname(socket, generic, &length) == 0
            }
        }
        guard bound else { throw SetupFailure("bind: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// `name: (calls, p99 bound in ms)` for each phase of idle callers, scraped from
    /// `url` with curl.
    static func scrape(_ url: String) async throws -> [(String, Any)] {
        let (status, out, err) = try await BuiltProducts.run("curl", ["-sS", "--fail", url])
        #expect(status == .exited(0), "curl: \(err)")
        let metrics = Exposition(out)
        var figures: [(String, Any)] = []
        for phase in phases {
            let labels = "phase=\"\(phase)\",sender=\"idle\""
            let count = metrics["shmbus_registry_call_duration_seconds_count{\(labels)}"] ?? 0
            // Cumulative buckets: the first bound holding 99% of the calls.
            let bounds = metrics.samples.compactMap { key, value -> (Double, Double)? in
                guard key.hasPrefix("shmbus_registry_call_duration_seconds_bucket{\(labels),le=\"") else { return nil }
                let bound = key.split(separator: "\"").dropLast().last.map(String.init) ?? ""
                return (bound == "+Inf" ? .infinity : Double(bound) ?? .infinity, value)
            }.sorted { $0.0 < $1.0 }
            let p99 = bounds.first { $0.1 >= 0.99 * count }?.0 ?? .infinity
            figures.append(("registry_idle_\(phase)_calls", Int(count)))
            figures.append(("registry_idle_\(phase)_p99_under", p99.isFinite ? "\(p99 * 1000)ms" : "+Inf"))
        }
        return figures
    }
}
