import NATS
import ShmBus

/// Why the bridge could not do something, with what it was doing.
public enum BridgeError: Error, Sendable, CustomStringConvertible {
    /// A bad option or name given to the bridge.
    case invalidArgument(String)
    /// A message from the stream that breaks docs/BRIDGE.md's layout (untrusted input).
    case badMessage(subject: String, reason: String)
    /// NATS.c failed.
    case nats(NATSError)
    /// The local bus or registry failed.
    case shmBus(ShmBusError, context: String)

    public var description: String {
        switch self {
        case .invalidArgument(let message): message
        case .badMessage(let subject, let reason): "message on '\(subject)': \(reason)"
        case .nats(let error): "NATS: \(error)"
        case .shmBus(let error, let context): "\(context): \(error)"
        }
    }
}
