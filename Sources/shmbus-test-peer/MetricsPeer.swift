// `metrics`: the library's counters seen by a real swift-metrics backend
// (swift-prometheus' factory), bootstrapped here, in a process of its own, because
// MetricsSystem.bootstrap is once per process and the test runner is shared.
import CoreMetrics
import DBus
import Foundation
import Prometheus
import ShmBus

/// Bootstraps the Prometheus factory, opens a subscriber on `channel` from sequence 1,
/// then, without reading, publishes COUNT chunks of SIZE bytes through CAPACITY-byte
/// segments collected when full (generations go by faster than the reader reads, so it
/// may fall behind a collection), then reads them all. Prints
/// "saw delivered D gaps G missed M", then the exposition text, then "end".
func publishWithMetrics(address: String, channel: String, count: Int, size: Int, capacity: UInt64) async throws {
    let collectors = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: collectors))
    var options = Publisher.Options()
    options.capacity = capacity
    options.garbageCollection = .whenFull
    let publisher = try await Publisher.open(channel: channel, on: .address(address), options: options)
    let subscriber = try await Subscriber.open(channel: channel, on: .address(address), options: .init(start: .sequence(1)))
    for index in 0..<count {
        try publisher.publish(length: size) { fill($0, sequence: UInt64(index + 1)) }
    }
    await publisher.flush()
    var (delivered, gaps, missed): (UInt64, UInt64, UInt64) = (0, 0, 0)
    for try await event in subscriber {
        switch event {
        case .chunk:
            delivered += 1
        case .gap(let skipped, _):
            gaps += 1
            missed += skipped
        case .publisherLeft:
            fail("the publisher is still there")
        }
        if delivered + missed >= UInt64(count) { break }
    }
    subscriber.cancel()
    say("saw delivered \(delivered) gaps \(gaps) missed \(missed)")
    say(collectors.emitToString())
    say("end")
    // Holds the channel until stdin closes, so that the test can read its properties.
    while readLine() != nil {}
    await publisher.close()
}
