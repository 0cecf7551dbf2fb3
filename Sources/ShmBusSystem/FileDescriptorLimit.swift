import Glibc

/// The process's limit on open descriptors, `RLIMIT_NOFILE`.
///
/// Most systems start processes with a soft limit of 1,024 (kept low for programs that
/// still use `select(2)`, which cannot watch higher numbers) and a hard limit far above
/// it. A process that holds a descriptor per object it manages, as the registry holds
/// one or two per segment, raises its soft limit to the hard one at start: nothing here
/// uses `select`.
public enum FileDescriptorLimit {
    /// The soft and hard limits now (`getrlimit(2)`); `Int.max` stands for
    /// `RLIM_INFINITY`.
    public static func current() throws(SystemError) -> (soft: Int, hard: Int) {
        var limit = rlimit()
        _ = try systemCall("getrlimit(RLIMIT_NOFILE)") { getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        return (Self.count(limit.rlim_cur), Self.count(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (`setrlimit(2)`; an unprivileged process
    /// may do that, never raise the hard limit), and returns both as they are then. An
    /// infinite hard limit is not a number `setrlimit` accepts for the soft one: the
    /// kernel's ceiling, `/proc/sys/fs/nr_open`, is used instead.
    @discardableResult
    public static func raiseSoftToHard() throws(SystemError) -> (soft: Int, hard: Int) {
        var limit = rlimit()
        _ = try systemCall("getrlimit(RLIMIT_NOFILE)") { getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        var target = limit.rlim_max
        if target == infinity { target = rlim_t(kernelCeiling ?? 1 << 20) }
        if limit.rlim_cur < target {
            limit.rlim_cur = target
            _ = try systemCall("setrlimit(RLIMIT_NOFILE)", context: "\(target)") {
                setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            }
        }
        return try current()
    }

    /// `/proc/sys/fs/nr_open`: the most descriptors the kernel lets one process have.
    private static var kernelCeiling: Int? {
        guard let file = fopen("/proc/sys/fs/nr_open", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        return Int(String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// `RLIM_INFINITY`, which Swift imports as a literal it cannot store unsigned.
    private static let infinity = rlim_t.max

    private static func count(_ value: rlim_t) -> Int {
        value == infinity ? Int.max : Int(clamping: value)
    }
}
