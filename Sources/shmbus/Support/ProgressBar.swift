import Foundation
import Glibc
import ShmBusSystem

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct ProgressBar {
    let total: UInt64
    let label: String
    private let enabled: Bool
    private var lastDrawn = ContinuousClock.now - .seconds(1)
    private let started = ContinuousClock.now

    init(total: UInt64, label: String) {
        self.total = total
        self.label = label
        enabled = isatty(STDERR_FILENO) == 1 && total >= 16 << 20
    }

    mutating func update(_ done: UInt64) {
        guard enabled, ContinuousClock.now - lastDrawn >= .milliseconds(100) || done == total else { return }
        lastDrawn = .now
        let fraction = total == 0 ? 1 : Double(done) / Double(total)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let seconds = max((ContinuousClock.now - started).inSeconds, 1e-9)
        let rate = ByteCount.human(UInt64(Double(done) / seconds))
        FileHandle.standardErrorWrite("\r\(label) [\(bar)] \(Int(fraction * 100))% \(ByteCount.human(done))/\(ByteCount.human(total)) \(rate)/s ")
        if done == total { FileHandle.standardErrorWrite("\n") }
    }
}
