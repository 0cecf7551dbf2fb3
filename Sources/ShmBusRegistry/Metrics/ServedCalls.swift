import DBus
import Locking
import Logging
import Prometheus
import ShmBusSystem

/// What the registry makes of each call its connection served
/// (``DBus/DBusConnection/observeServedCalls(_:)``): the time of each phase in the
/// metrics (`shmbus_registry_call_duration_seconds`, by phase and by whether the
/// sender was idle), and a warning for a call of an idle sender slower than the
/// configured threshold, which is the scheduling's promise broken: such a call should
/// wait for about one other call to start.
///
/// Warnings are at most ``warningsPerSecond`` a second; the next one says how many were
/// left out, so that a burst of slow calls does not add a burst of log writes to the
/// loop thread that reports them.
final class ServedCalls: Sendable {
    private struct Phases: Sendable {
        let inLoop, queued, handling, replying: DurationHistogram
    }

    private struct Window {
        var start = ContinuousClock.now
        var logged = 0
        var omitted = 0
    }

    private let idle: Phases
    private let busy: Phases
    private let threshold: Duration?
    private let logger: Logger
    private let window = Lock(Window())
    static let warningsPerSecond = 10

    init(metrics: RegistryMetrics, threshold: Duration?, logger: Logger) {
        func phases(_ sender: String) -> Phases {
            func histogram(_ phase: String) -> DurationHistogram {
                metrics.collectors.makeDurationHistogram(
                    descriptor: Self.duration, labels: [("phase", phase), ("sender", sender)], buckets: Self.buckets)
            }
            return Phases(inLoop: histogram("loop"), queued: histogram("queued"), handling: histogram("handler"), replying: histogram("reply"))
        }
        idle = phases("idle")
        busy = phases("busy")
        self.threshold = threshold
        self.logger = logger
    }

    static var duration: MetricNameDescriptor {
        RegistryMetrics.name(
            "registry", "call_duration", "seconds",
            "Time of each phase of the calls the registry served, from the read to the reply, by whether the sender was idle.")
    }

    private static let buckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5),
    ]

    /// Records `call` (loop thread).
    func record(_ call: DBusConnection.ServedCall) {
        let phases = call.fromIdleSender ? idle : busy
        phases.inLoop.record(call.inLoop)
        phases.queued.record(call.queued)
        phases.handling.record(call.handling)
        phases.replying.record(call.replying)
        guard call.fromIdleSender, let threshold, call.total > threshold else { return }
        let omitted = window.withLock { window -> Int? in
            let now = ContinuousClock.now
            if now - window.start >= .seconds(1) {
                window.start = now
                window.logged = 0
            }
            guard window.logged < Self.warningsPerSecond else {
                window.omitted += 1
                return nil
            }
            window.logged += 1
            defer { window.omitted = 0 }
            return window.omitted
        }
        guard let omitted else { return }
        var metadata: Logger.Metadata = [
            "member": "\(call.member)", "sender": "\(call.sender)", "total-ms": "\(Self.milliseconds(call.total))",
            "loop-ms": "\(Self.milliseconds(call.inLoop))", "queued-ms": "\(Self.milliseconds(call.queued))",
            "handler-ms": "\(Self.milliseconds(call.handling))", "reply-ms": "\(Self.milliseconds(call.replying))",
        ]
        if omitted > 0 { metadata["not-logged-before"] = "\(omitted)" }
        logger.warning("slow call from an idle client", metadata: metadata)
    }

    /// To a tenth of a millisecond.
    private static func milliseconds(_ duration: Duration) -> String {
        "\((duration.inSeconds * 10_000).rounded() / 10)"
    }
}
