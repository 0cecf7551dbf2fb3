extension DBusValue {
    /// The descriptors in this value, nested ones included.
    var unixFDCount: Int {
        switch self {
        case .unixFD: 1
        case .variant(let inner): inner.unixFDCount
        case .array(_, let elements), .structure(let elements): elements.reduce(0) { $0 + $1.unixFDCount }
        case .dictionary(_, _, let entries): entries.reduce(0) { $0 + $1.key.unixFDCount + $1.value.unixFDCount }
        default: 0
        }
    }
}

extension ConnectionLoop {
    /// Hands `answer`, the handling of `call`, to the scheduler, which sends its reply;
    /// a call whose descriptors would pass its limit is answered at once with the
    /// scheduling's refusal error (`LimitsExceeded` unless the service chose another),
    /// and its descriptors close with it.
    func schedule(_ call: DBusMessage, _ answer: @escaping @Sendable () async -> Result<[DBusValue], DBusError>) {
        let unixFDs = call.body.reduce(0) { $0 + $1.unixFDCount }
        let core = core
        let (woke, dispatched) = (wokeAt, ContinuousClock.now)
        let job: CallScheduler.Job = { idle in
            let started = ContinuousClock.now
            let result = await answer()
            let answered = ContinuousClock.now
            let served = DBusConnection.ServedCall(
                interface: call.interface, member: call.member ?? "", sender: call.sender ?? "", fromIdleSender: idle,
                inLoop: dispatched - woke, queued: started - dispatched, handling: answered - started, replying: .zero)
            return { ConnectionLoop.sendReplyFromTask(to: call, result, through: core, served: served, answeredAt: answered) }
        }
        do {
            try core.scheduler.submit(sender: call.sender ?? "", unixFDs: unixFDs, job)
        } catch {
            let limits = core.scheduler.limits
            let message = switch error {
            case .descriptors: "too many descriptors wait in calls to this connection (limit \(limits.queuedUnixFDs)); retry later"
            case .groupFull(let waiting):
                "\(waiting) calls of this client wait here already (limit \(limits.waitingPerGroup) across its connections); retry when they are answered"
            }
            reply(to: call, with: DBusError(name: limits.refusalErrorName, message: message))
        }
    }
}
