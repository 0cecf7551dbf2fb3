import Foundation
import Glibc
import ShmBusSystem
import Testing

/// Spawning: streams, inherited descriptors and a signal mask children can be stopped with.
@Suite struct ChildProcessTests {
    @Test func pipesCarryInputAndOutput() async throws {
        let child = try ChildProcess(
            "/bin/sh", ["-c", "read line; echo \"got $line\"; echo oops >&2"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
        try child.standardInput?.writeAll(Array("hello\n".utf8))
        child.closeStandardInput()
        child.closeStandardInput()  // idempotent
        let (out, err) = try await child.collectOutput()
        #expect(String(decoding: out, as: UTF8.self) == "got hello\n")
        #expect(String(decoding: err, as: UTF8.self) == "oops\n")
        #expect(await child.exit() == .exited(0))
    }

    @Test func anInheritedDescriptorKeepsItsNumberInTheChild() async throws {
        let pipe = try UnixFileDescriptor.pipe()
        let number = pipe.write.rawValue
        // Through /proc: dash's `>&N` takes one digit only, and the number may have two.
        let child = try ChildProcess("/bin/sh", ["-c", "echo through > /proc/self/fd/\(number)"], inheriting: [pipe.write])
        #expect(await child.exit() == .exited(0))
        try pipe.write.close()
        #expect(String(decoding: try ChildProcess.readAll(pipe.read), as: UTF8.self) == "through\n")
    }

    @Test func childrenCanBeStoppedWithSIGTERM() async throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        child.signal(SIGTERM)
        #expect(await child.exit() == .signaled(SIGTERM))
    }
}
