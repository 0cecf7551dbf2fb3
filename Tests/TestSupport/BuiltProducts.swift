import DBus
import Foundation
import ShmBusSystem

/// Executables built next to the test binary, run as real child processes.
public enum BuiltProducts {
    /// The build products directory: where the test binary (`ShmBusPackageTests.xctest`)
    /// and the package's executables are.
    public static var directory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// The path of the built executable `name`.
    public static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    /// The repository's root.
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs `executable` to completion, returning its exit status, stdout and stderr.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdin: ChildProcess.Stream = .null
    ) async throws -> (status: ChildProcess.Termination, stdout: String, stderr: String) {
        let child = try ChildProcess(executable, arguments, environment: environment, stdin: stdin, stdout: .pipe, stderr: .pipe)
        let (o, e) = try await child.collectOutput()
        let status = await child.exit()
        return (status, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
