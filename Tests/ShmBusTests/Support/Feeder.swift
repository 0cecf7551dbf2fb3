import Foundation
import Locking

/// Calls `body` every `interval` on a thread of its own until stopped: a publisher that
/// keeps publishing while the suite loads both cores, where a task on the concurrency
/// pool can wait seconds for its turn (see `onOwnThread`), so that a test watching the
/// rates sees the chunks it expects to move.
final class Feeder: Sendable {
    private let stopped = Lock(false)

    init(every interval: Duration, _ body: @escaping @Sendable () -> Void) {
        let stopped = stopped
        let microseconds = UInt32(interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000)
        Thread {
            while !stopped.withLock({ $0 }) {
                body()
                usleep(microseconds)
            }
        }.start()
    }

    func stop() { stopped.withLock { $0 = true } }

    deinit { stop() }
}
