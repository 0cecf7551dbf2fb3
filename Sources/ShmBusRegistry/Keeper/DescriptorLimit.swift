import Glibc

/// The keeper's open-file limit. It holds one descriptor per kept segment and one per
/// doorbell, far beyond the usual soft limit of 1,024; once the limit is reached, libdbus
/// cannot receive a message's descriptors and drops the connection, and a keeper that
/// loses its connection exits with everything it held. So the soft limit is raised to
/// the hard one, and what is left decides how many segments the keeper accepts.
enum DescriptorLimit {
    /// Descriptors kept free for the bus connection, logging and the process's own use.
    static let reserve = 64

    /// Raises the soft limit to the hard limit; returns the soft limit in force after.
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// How many segments fit under `descriptors`: two descriptors each (the segment and
    /// its doorbell), after the reserve.
    static func segments(under descriptors: Int) -> Int {
        max(0, (descriptors - reserve) / 2)
    }
}
