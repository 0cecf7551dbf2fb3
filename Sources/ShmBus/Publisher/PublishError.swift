/// Why a publish with a fill closure failed: the closure's own error, or ShmBus's.
enum PublishError<Fill: Error>: Error {
    /// The fill closure threw this; nothing was published.
    case fill(Fill)
    /// ShmBus could not publish.
    case shmBus(ShmBusError)
}

extension PublishError where Fill == Never {
    /// A publish whose fill closure cannot fail fails only with a ``ShmBusError``.
    var shmBusError: ShmBusError {
        switch self {
        case .shmBus(let error): error
        }
    }
}
