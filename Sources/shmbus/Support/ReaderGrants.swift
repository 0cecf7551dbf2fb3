import ArgumentParser
import Glibc
import ShmBus

/// `--readers`: read grants as the command line takes them. Users and groups may be
/// named (`user:alice`, `group:video`) or numbered; names are resolved here, with the
/// system's user database, because the registry takes numbers only (ReadPolicy).
struct ReaderGrants: ExpressibleByArgument, Sendable {
    var grants: [ReadPolicy.Grant]

    init?(argument: String) {
        var grants: [ReadPolicy.Grant] = []
        for item in argument.split(separator: ",").map(String.init) {
            guard let grant = Self.grant(item) else { return nil }
            grants.append(grant)
        }
        guard !grants.isEmpty else { return nil }
        self.grants = grants
    }

    static var defaultCompletionKind: CompletionKind { .default }

    private static func grant(_ item: String) -> ReadPolicy.Grant? {
        if let parsed = try? ReadPolicy.Grant(parsing: item) { return parsed }
        let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        switch parts[0] {
        case "user": return getpwnam(parts[1]).map { .user($0.pointee.pw_uid) }
        case "group": return getgrnam(parts[1]).map { .group($0.pointee.gr_gid) }
        default: return nil
        }
    }
}
