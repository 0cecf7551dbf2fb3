import Foundation
import ShmBusTesting
import Testing

/// `PrivateBus` itself: a daemon that cannot start is an error with its log, at once.
@Suite struct PrivateBusStartTests {
    /// The supervising shell used to keep its copy of the daemon's stdout, so that a
    /// daemon that failed before printing its address left `init` reading forever (a
    /// CI run hung an hour on a wrapper exec'd while "Text file busy").
    @Test(.timeLimit(.minutes(5)))
    func aDaemonThatCannotStartIsAnErrorNotAHang() throws {
        let error = #expect(throws: (any Error).self) {
            _ = try PrivateBus(launcher: ["/bin/sh", "-c", "echo 'cannot start: on purpose' >&2; exit 3", "launcher"])
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("cannot start: on purpose"))
    }
}
