/// Signal subscriptions, on the loop thread.

/// One signal subscription: its rule and where matching messages go.
final class Subscription {
    let rule: MatchRule
    let sink: SignalSink

    init(rule: MatchRule, sink: SignalSink) {
        self.rule = rule
        self.sink = sink
    }
}

/// Where a subscription's messages go, on the loop thread.
struct SignalSink: Sendable {
    /// Called with each matching message.
    let deliver: @Sendable (DBusMessage) -> Void
    /// Called once when the connection closes.
    let finish: @Sendable (DBusError) -> Void
}

/// The current owner of a well-known name that some subscription matches on.
struct TrackedName {
    var owner: String?
    var users = 0
}

extension ConnectionLoop {
    static var busName: String { DBusConnection.busDestination }

    private static func nameOwnerRule(for name: String) -> MatchRule {
        MatchRule(sender: busName, interface: busName, member: "NameOwnerChanged").matching(argument: 0, name)
    }

    /// Registers a subscription locally, then asks the bus for its messages (`AddMatch`).
    /// `ready` resumes once the bus has acknowledged the rule: from then on every
    /// matching signal reaches the stream.
    func subscribe(
        id: UInt64, rule: MatchRule, sink: SignalSink, ready: CheckedContinuation<Void, any Error>
    ) {
        guard isOpen else {
            ready.resume(throwing: DBusError.disconnected())
            return
        }
        subscriptions[id] = Subscription(rule: rule, sink: sink)
        if let sender = rule.sender, Self.isWellKnown(sender) {
            track(sender)
        }
        callBus("AddMatch", [.string(rule.description)]) { loop, result in
            switch result {
            case .success:
                ready.resume()
            case .failure(let error):
                loop.dropSubscription(id)
                ready.resume(throwing: error)
            }
        }
    }

    /// Ends a subscription: removes it locally and from the bus (`RemoveMatch`).
    func unsubscribe(id: UInt64) {
        guard isOpen, let subscription = dropSubscription(id) else { return }
        callBus("RemoveMatch", [.string(subscription.rule.description)]) { loop, result in
            if case .failure(let error) = result {
                loop.logger.debug("RemoveMatch failed", metadata: ["error": "\(error)"])
            }
        }
    }

    @discardableResult
    private func dropSubscription(_ id: UInt64) -> Subscription? {
        guard let subscription = subscriptions.removeValue(forKey: id) else { return nil }
        if let sender = subscription.rule.sender, Self.isWellKnown(sender) {
            untrack(sender)
        }
        return subscription
    }

    private static func isWellKnown(_ name: String) -> Bool {
        !name.hasPrefix(":") && name != busName
    }

    /// Starts following the owner of `name`: a NameOwnerChanged rule, then
    /// `GetNameOwner`. The bus answers in order, so the owner is known before the
    /// reply to any `AddMatch` sent after this.
    private func track(_ name: String) {
        if trackedNames[name] != nil {
            trackedNames[name]?.users += 1
            return
        }
        trackedNames[name] = TrackedName(owner: nil, users: 1)
        callBus("AddMatch", [.string(Self.nameOwnerRule(for: name).description)]) { loop, result in
            if case .failure(let error) = result {
                loop.logger.warning("cannot follow the owner of \(name)", metadata: ["error": "\(error)"])
            }
        }
        callBus("GetNameOwner", [.string(name)]) { loop, result in
            guard loop.trackedNames[name] != nil else { return }
            if case .success(let reply) = result, case .string(let owner)? = reply.body.first {
                loop.trackedNames[name]?.owner = owner
            } else {
                loop.trackedNames[name]?.owner = nil
            }
        }
    }

    private func untrack(_ name: String) {
        guard var tracked = trackedNames[name] else { return }
        tracked.users -= 1
        if tracked.users > 0 {
            trackedNames[name] = tracked
            return
        }
        trackedNames[name] = nil
        callBus("RemoveMatch", [.string(Self.nameOwnerRule(for: name).description)]) { _, _ in }
    }

    /// Hands a signal to every subscription whose rule matches it.
    func routeSignal(_ message: DBusMessage) {
        if message.sender == Self.busName, message.interface == Self.busName, message.member == "NameOwnerChanged",
            message.body.count == 3, case .string(let name) = message.body[0], case .string(let newOwner) = message.body[2],
            trackedNames[name] != nil
        {
            trackedNames[name]?.owner = newOwner.isEmpty ? nil : newOwner
        }
        for subscription in subscriptions.values {
            let owner = subscription.rule.sender.flatMap { trackedNames[$0]?.owner }
            if subscription.rule.matches(message, senderOwner: owner) {
                subscription.sink.deliver(message)
            }
        }
    }

    func finishSubscriptions(throwing error: DBusError) {
        let all = subscriptions
        subscriptions = [:]
        trackedNames = [:]
        for subscription in all.values {
            subscription.sink.finish(error)
        }
    }
}
