import ShmBus

/// Shorthands for the registry's `org.shmbus.Error.*` replies.
extension ShmBusError {
    static func notFound(_ message: String) -> ShmBusError { ShmBusError(.notFound, message) }
    static func accessDenied(_ message: String) -> ShmBusError { ShmBusError(.accessDenied, message) }
    static func invalidArgument(_ message: String) -> ShmBusError { ShmBusError(.invalidArgument, message) }
    static func notSealed(_ message: String) -> ShmBusError { ShmBusError(.notSealed, message) }
    static func badSegment(_ message: String) -> ShmBusError { ShmBusError(.badSegment, message) }
    static func quotaExceeded(_ message: String) -> ShmBusError { ShmBusError(.quotaExceeded, message) }
    static func channelBusy(_ message: String) -> ShmBusError { ShmBusError(.channelBusy, message) }
}
