import ArgumentParser
import Foundation
import SharedSegments
import ShmBus

/// The ShmBus side of the latency part: a subscriber that records, for each chunk, the
/// time from the publisher reserving it to this process holding it (CLOCK_REALTIME,
/// shared by every process).
extension BenchWorker {
    /// How `latency-sub` reads, from `--wait`.
    enum LatencyReader {
        /// The async iterator (`for try await`), with this wait.
        case iterator(Subscriber.Wait)
        /// `readBlocking` on a thread of its own: the low-latency consumer.
        case blocking(Subscriber.Wait)

        init(_ wait: String) throws {
            switch wait {
            case "bus": self = .iterator(.bus)
            case "futex-async": self = .iterator(.futex)
            case "futex": self = .blocking(.futex)
            case let spin where spin.hasPrefix("spin:"):
                guard let budget = SpinBudget(argument: String(spin.dropFirst(5))) else { throw ValidationError("bad spin budget \(spin)") }
                self = .blocking(.spin(budget.duration))
            default: throw ValidationError("latency-sub: unknown --wait \(wait)")
            }
        }
    }

    /// Prints the nanoseconds as a JSON array; a blocking reader then prints
    /// "cpu NS WALL_NS": its thread's CPU time and the wall time from the first chunk to
    /// the last, what waiting that way burns.
    func latencySubscriber(_ bus: DBusConnection.Bus) async throws {
        let reader = try LatencyReader(wait)
        let strategy: Subscriber.Wait
        switch reader {
        case .iterator(let wait), .blocking(let wait): strategy = wait
        }
        let subscriber = try await Subscriber.open(channel: channel, on: bus, options: .init(start: .now, wait: strategy))
        Output.line("ready")
        let count = self.count
        switch reader {
        case .blocking:
            let (latencies, span) = try await onThread { () throws -> ([UInt64], ThreadCPU.Span) in
                var samples: [UInt64] = []
                samples.reserveCapacity(count)
                var span = ThreadCPU.Span()
                try subscriber.readBlocking { event in
                    if case .chunk(let chunk) = event {
                        samples.append(RealtimeClock.now() &- chunk.timestamp)
                        if samples.count == 1 { span.start() }
                    }
                    return samples.count < count
                }
                span.stop()
                return (samples, span)
            }
            subscriber.cancel()
            try JSONOutput.print(latencies)
            Output.line(span.line)
        case .iterator:
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            for try await chunk in subscriber.chunks {
                samples.append(RealtimeClock.now() &- chunk.timestamp)
                if samples.count == count { break }
            }
            subscriber.cancel()
            try JSONOutput.print(samples)
        }
    }
}
