import ArgumentParser
import Foundation

struct InstallService: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Install the D-Bus activation files, so the first call to the registry starts it.",
        discussion: """
            Writes org.shmbus.Registry1.service, and org.shmbus.Keeper1.service for the keeper that \
            holds persistent segments while the registry restarts, with the real path of this binary.
            """)

    @Option(help: "Where to write the file (default: ~/.local/share/dbus-1/services).")
    var directory: String?

    @Option(help: "The shmbus binary the bus should start (default: this one).")
    var exec: String?

    func run() throws {
        let target = directory ?? Self.defaultDirectory()
        let binary = exec ?? Self.currentExecutable()
        do {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            for (name, template, command) in [
                ("org.shmbus.Registry1.service", PackageResources.org_shmbus_Registry1_service, "daemon"),
                ("org.shmbus.Keeper1.service", PackageResources.org_shmbus_Keeper1_service, "keeper"),
            ] {
                let path = (target as NSString).appendingPathComponent(name)
                try Self.serviceFile(template, exec: binary).write(toFile: path, atomically: true, encoding: .utf8)
                print("installed \(path) (Exec=\(binary) \(command))")
            }
        } catch {
            FileHandle.standardErrorWrite("shmbus: cannot write the service file into \(target): \(error.localizedDescription)\n")
            throw ExitCode(73)
        }
    }

    /// An activation file from dbus/, with `@SHMBUS_BIN@` replaced.
    static func serviceFile(_ template: [UInt8], exec: String) -> String {
        String(decoding: template, as: UTF8.self).replacingOccurrences(of: "@SHMBUS_BIN@", with: exec)
    }

    static func defaultDirectory() -> String {
        let data = ProcessInfo.processInfo.environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".local/share")
        return (data as NSString).appendingPathComponent("dbus-1/services")
    }

    /// The absolute path of the running binary (`/proc/self/exe`).
    static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
