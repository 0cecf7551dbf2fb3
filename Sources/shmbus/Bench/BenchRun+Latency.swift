import Foundation
import ShmBus

/// Part 2, notification latency: ShmBus's ways of waiting, each beside the bare
/// mechanism under it (a bus signal, a futex wake, a spin on shared memory), measured
/// in the same run.
extension BenchRun {
    /// The paths take turns: `rounds` rounds of `count / rounds` notifications each,
    /// every round in a rotated order, so that a noisy minute on this shared machine
    /// lands on every path alike instead of on whichever ran during it.
    func latency(count: Int, rate: Int, rounds: Int) async throws -> LatencyResult {
        var result = LatencyResult(count: count, rate: rate, size: 4096)
        // Twice the interval between chunks: every chunk comes during a spin, so the
        // spin row measures spinning (a budget shorter than the interval measures the
        // futex path after a wasted spin).
        let spinBudget = 2_000_000 / rate
        result.spinBudgetMicroseconds = spinBudget
        let paths = LatencyResult.Path.allCases
        var samples: [LatencyResult.Path: [UInt64]] = [:]
        var cpu: [LatencyResult.Path: (cpu: UInt64, wall: UInt64)] = [:]
        let perRound = max(1, count / rounds)
        for round in 0..<rounds {
            for offset in paths.indices {
                let path = paths[(round + offset) % paths.count]
                let (taken, spent) = try await latencySamples(path, round: round, count: perRound, rate: rate, spinBudget: spinBudget)
                samples[path, default: []] += taken
                if let spent { cpu[path, default: (0, 0)] = (cpu[path, default: (0, 0)].cpu + spent.cpu, cpu[path, default: (0, 0)].wall + spent.wall) }
            }
        }
        func share(_ path: LatencyResult.Path) -> Double? {
            guard let spent = cpu[path], spent.wall > 0 else { return nil }
            return Double(spent.cpu) / Double(spent.wall)
        }
        result.count = perRound * rounds
        result.busPath = Samples(nanoseconds: samples[.bus] ?? [])
        result.futexPath = Samples(nanoseconds: samples[.futex] ?? [])
        result.futexIteratorPath = Samples(nanoseconds: samples[.futexIterator] ?? [])
        result.spinPath = Samples(nanoseconds: samples[.spin] ?? [])
        result.bareSignal = Samples(nanoseconds: samples[.bareSignal] ?? [])
        result.bareFutex = Samples(nanoseconds: samples[.bareFutex] ?? [])
        result.bareSpin = Samples(nanoseconds: samples[.bareSpin] ?? [])
        result.waiterCPU = .init(futex: share(.futex), spin: share(.spin), bareSpin: share(.bareSpin))
        return result
    }

    /// One round of one path: a fresh sender and receiver (on a channel of their own),
    /// `count` notifications; and, for a receiver that reports it, its waiting thread's
    /// CPU and wall time.
    private func latencySamples(
        _ path: LatencyResult.Path, round: Int, count: Int, rate: Int, spinBudget: Int
    ) async throws -> ([UInt64], (cpu: UInt64, wall: UInt64)?) {
        let paced = ["--count", "\(count)", "--rate", "\(rate)"]
        let receiver: Worker
        let sender: Worker
        var reportsCPU = false
        switch path {
        case .bus, .futex, .futexIterator, .spin:
            let wait: String
            switch path {
            case .futex: (wait, reportsCPU) = ("futex", true)
            case .futexIterator: wait = "futex-async"
            case .spin: (wait, reportsCPU) = ("spin:\(spinBudget)us", true)
            default: wait = "bus"
            }
            let channel = "bench/latency-\(path.rawValue)-\(round)"
            sender = try await worker("paced-pub", ["--channel", channel, "--size", "4096"] + paced)
            receiver = try await worker("latency-sub", ["--channel", channel, "--count", "\(count)", "--wait", wait])
        case .bareSignal:
            receiver = try await worker("signal-recv", ["--count", "\(count)"])
            sender = try await worker("signal-send", paced)
        case .bareFutex, .bareSpin:
            let spin = path == .bareSpin
            reportsCPU = spin
            receiver = try await worker(spin ? "spin-recv" : "futex-recv", ["--count", "\(count)"])
            let page = receiver.readyLine.split(separator: " ").dropFirst().joined(separator: ":")
            sender = try await worker(spin ? "spin-send" : "futex-send", ["--dest", page] + paced)
        }
        try sender.send("go")
        let samples = try JSONDecoder().decode([UInt64].self, from: Data(try await receiver.line().utf8))
        var spent: (cpu: UInt64, wall: UInt64)?
        if reportsCPU {
            // "cpu NS WALL_NS"
            let fields = try await receiver.line().split(separator: " ")
            guard fields.count == 3, fields[0] == "cpu", let cpu = UInt64(fields[1]), let wall = UInt64(fields[2]) else {
                throw ShmBusError(.bus, "unexpected cpu line from \(receiver.role): \(fields)")
            }
            spent = (cpu, wall)
        }
        _ = try await sender.line()
        try sender.send("quit")
        await sender.finish()
        await receiver.finish()
        return (samples, spent)
    }
}
