import Glibc
import ShmBusSystem
import SystemPackage
import Testing

/// Errors keep the errno, the call's name and what it was about.
@Suite struct SystemErrorTests {
    @Test func aFailedCallNamesItselfItsContextAndTheErrno() throws {
        let error = #expect(throws: SystemError.self) {
            _ = try UnixFileDescriptor.open("/nonexistent/shmbus-test", O_RDONLY)
        }
        #expect(error?.errno == .noSuchFileOrDirectory)
        #expect(error?.call == "open")
        #expect(error?.context == "/nonexistent/shmbus-test")
        #expect(error?.description == "open(/nonexistent/shmbus-test) failed: \(Errno.noSuchFileOrDirectory) (errno \(ENOENT))")
    }

    @Test func systemCallReturnsTheResultAndRetriesOnInterrupt() throws {
        #expect(try systemCall("getpid") { getpid() } == getpid())
        var attempts = 0
        let result = try systemCall("flaky") { () -> Int32 in
            attempts += 1
            if attempts < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7 && attempts == 3)
        attempts = 0
        let interrupted = #expect(throws: SystemError.self) {
            try systemCall("flaky", context: "once", retryingOnInterrupt: false) { () -> Int32 in
                attempts += 1
                errno = EINTR
                return -1
            }
        }
        #expect(interrupted?.errno == .interrupted && interrupted?.context == "once" && attempts == 1)
    }

    @Test func spawningSomethingMissingSaysWhat() {
        let error = #expect(throws: SystemError.self) { _ = try ChildProcess("shmbus-no-such-command-\(getpid())") }
        #expect(error?.errno == .noSuchFileOrDirectory)
        #expect(error?.call == "posix_spawn")
        #expect(error?.context.contains("not found on PATH") == true)
    }
}
