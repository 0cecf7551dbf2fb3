import Foundation
import Glibc
import ShmBusSystem
import TestSupport
import Testing

/// A sandbox laid out as Flatpak lays out an app's: bubblewrap with new namespaces, the
/// host's /usr read-only, the app's `/.flatpak-info` from a descriptor
/// (`--ro-bind-data`, as flatpak-run.c passes it), and only the bus directory of the
/// session bus from outside. shmbus and the Swift runtime are bound read-only under
/// /app and their own paths.
struct Sandbox: Sendable {
    static var available: Bool { ChildProcess.findExecutable("bwrap") != nil }
    static let needsBwrap: Comment = "needs bubblewrap (scripts/ensure-deps.sh installs it)"
    /// Where shmbus is inside.
    static let shmbus = "/app/bin/shmbus"

    /// The app ID; nil: a bwrap sandbox without `/.flatpak-info` (a control: not a
    /// Flatpak app).
    var appID: String?
    /// The bus socket's directory, bound into the sandbox.
    var busDirectory: String

    /// `/.flatpak-info` as Flatpak writes it (flatpak-run.c, flatpak_run_add_app_info_args).
    static func info(appID: String) -> String {
        """
        [Application]
        name=\(appID)
        runtime=runtime/org.freedesktop.Platform/x86_64/23.08

        [Instance]
        instance-id=\(UInt32.random(in: 1_000_000_000...UInt32.max))
        app-path=/var/lib/flatpak/app/\(appID)/x86_64/stable/0123456789abcdef/files
        app-commit=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        runtime-path=/var/lib/flatpak/runtime/org.freedesktop.Platform/x86_64/23.08/fedcba9876543210/files
        branch=stable
        arch=x86_64
        flatpak-version=1.14.10
        session-bus-proxy=true
        system-bus-proxy=true

        [Context]
        shared=ipc;
        sockets=wayland;

        """
    }

    /// The descriptor `--ro-bind-data` reads the info from (an unlinked file).
    func infoDescriptor() throws -> UnixFileDescriptor? {
        guard let appID else { return nil }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shmbus-flatpak-info-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try Self.info(appID: appID).write(toFile: path, atomically: false, encoding: .utf8)
        defer { unlink(path) }
        return try UnixFileDescriptor.open(path, O_RDONLY)
    }

    /// The bwrap command line that runs `executable` inside.
    func command(_ executable: String, _ arguments: [String], info: UnixFileDescriptor?) -> [String] {
        var bwrap = [
            "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--ro-bind", BuiltProducts.path("shmbus"), Self.shmbus,
            "--bind", busDirectory, busDirectory,
        ]
        if let runtime = Self.swiftRuntime { bwrap += ["--ro-bind", runtime, runtime] }
        if let info { bwrap += ["--ro-bind-data", info.withRawValue { String($0) }, "/.flatpak-info"] }
        return bwrap + [executable] + arguments
    }

    /// The directory of the Swift runtime libraries the built products link (this
    /// process's libswiftCore.so).
    static let swiftRuntime: String? = {
        // Read, not String(contentsOfFile:): /proc files say they are empty.
        guard let file = try? UnixFileDescriptor.open("/proc/self/maps", O_RDONLY), let bytes = try? file.readAll(limit: 64 << 20) else { return nil }
        let maps = String(decoding: bytes, as: UTF8.self)
        guard let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("/libswiftCore.so") }),
            let slash = line.firstIndex(of: "/")
        else { return nil }
        let library = URL(fileURLWithPath: String(line[slash...]))
        // The toolchain's usr/lib/swift (its linux/ holds the libraries; some link others
        // next to it).
        return library.deletingLastPathComponent().deletingLastPathComponent().path
    }()
}
