extension DBusConnection {
    /// Counts `sender`'s later calls to this connection's exported objects in `group`
    /// for ``CallScheduling/waitingPerGroup`` (nil: in a group of its own again, as
    /// every sender starts). A service puts the connections of one client together
    /// (the registry: those of one process, once the bus has told it the process), so
    /// that a client cannot keep more calls waiting by opening more connections.
    /// Calls already waiting stay counted where they came; forget a sender that left
    /// the bus with nil.
    public func groupCalls(of sender: String, as group: String?) {
        core.scheduler.assign(sender, to: group)
    }
}
