extension DBusConnection {
    /// Where one method call served by this connection's exported objects spent its
    /// time, from the loop's wake-up that read it to its reply handed to libdbus
    /// (see ``observeServedCalls(_:)``).
    ///
    /// What happens before (the caller, the bus's queue towards this connection, the
    /// socket) and after (the bus reading the reply) is not in it: a caller that waited
    /// much longer than ``total`` waited outside this process.
    public struct ServedCall: Sendable {
        public var interface: String?
        public var member: String
        /// The caller's unique name.
        public var sender: String
        /// Whether the sender had no other call queued or running here when this one
        /// came: a light client, which ``CallScheduling`` serves before the ring of
        /// busy senders. Such a call waits for about one other call to start; when it
        /// waits much longer, the scheduling did not hold.
        public var fromIdleSender: Bool
        /// From the loop's wake-up that read the call (`poll` returning) to its dispatch:
        /// the loop's own turn (the commands before it, the reads of a busy socket).
        public var inLoop: Duration
        /// From dispatch to the handler's start: the scheduler's per-sender queue and
        /// the concurrency pool's queue.
        public var queued: Duration
        /// The handler itself, with everything it awaited (an actor, the bus).
        public var handling: Duration
        /// From the handler's end to its reply handed to libdbus on the loop thread;
        /// zero for a call that expects no reply.
        public var replying: Duration

        public var total: Duration { inLoop + queued + handling + replying }
    }

    /// Reports every method call of exported objects that a handler answered (method
    /// handlers, property accessors, `GetManagedObjects`), on the loop thread as its
    /// reply is sent: keep `observer` short (count, or hand off). Calls the bus layer
    /// answers itself before any handler (an unknown method, a wrong signature, too
    /// many descriptors, `Introspect`, `Peer`) are not reported. A later call replaces
    /// the observer; nil removes it.
    public func observeServedCalls(_ observer: (@Sendable (ServedCall) -> Void)?) {
        core.scheduler.observer = observer.map(CallScheduler.Observer.init)
    }
}
