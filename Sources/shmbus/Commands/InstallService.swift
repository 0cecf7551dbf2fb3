import ArgumentParser
import Foundation

struct InstallService: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Install the D-Bus activation files, so the first call to the registry starts it.",
        discussion: """
            Writes org.shmbus.Registry1.service, and org.shmbus.Keeper1.service for the keeper that \
            holds persistent segments while the registry restarts, with the real path of this binary. \
            With --systemd it also writes the systemd user units shmbus-registry.service and \
            shmbus-keeper.service (Type=dbus) and points the activation files at them \
            (SystemdService=); a bus without systemd still starts the daemon from Exec=.
            """)

    @Option(help: "Where to write the activation files (default: ~/.local/share/dbus-1/services).")
    var directory: String?

    @Option(help: "The shmbus binary the bus should start (default: this one).")
    var exec: String?

    @Flag(help: "Also install the systemd user units and have D-Bus activation start them.")
    var systemd = false

    @Option(help: "Where to write the systemd user units (default: ~/.config/systemd/user).")
    var systemdDirectory: String?

    func validate() throws {
        if systemdDirectory != nil, !systemd { throw ValidationError("--systemd-directory needs --systemd") }
    }

    func run() throws {
        let target = directory ?? Self.defaultDirectory()
        let binary = exec ?? Self.currentExecutable()
        let units = systemd ? SystemdUnits(directory: systemdDirectory ?? SystemdUnits.defaultDirectory()) : nil
        try units?.install(exec: binary)
        do {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            for (name, template, command, unit) in [
                ("org.shmbus.Registry1.service", PackageResources.org_shmbus_Registry1_service, "daemon", SystemdUnits.registry),
                ("org.shmbus.Keeper1.service", PackageResources.org_shmbus_Keeper1_service, "keeper", SystemdUnits.keeper),
            ] {
                let path = (target as NSString).appendingPathComponent(name)
                let file = Self.serviceFile(template, exec: binary, systemdService: units == nil ? nil : unit.name)
                try file.write(toFile: path, atomically: true, encoding: .utf8)
                print("installed \(path) (Exec=\(binary) \(command)\(units == nil ? "" : ", SystemdService=\(unit.name)"))")
            }
        } catch {
            FileHandle.standardErrorWrite("shmbus: cannot write the service file into \(target): \(error.localizedDescription)\n")
            throw ExitCode(73)
        }
        if units != nil {
            print("run `systemctl --user daemon-reload` if a systemd user manager runs; without one, Exec= starts the daemon")
        }
    }

    /// An activation file from dbus/, with `@SHMBUS_BIN@` replaced and, for systemd, the
    /// unit D-Bus should ask systemd to start (`SystemdService=`, which a bus without
    /// systemd activation ignores in favour of `Exec=`).
    static func serviceFile(_ template: [UInt8], exec: String, systemdService: String? = nil) -> String {
        var file = String(decoding: template, as: UTF8.self).replacingOccurrences(of: "@SHMBUS_BIN@", with: exec)
        if let systemdService { file += "SystemdService=\(systemdService)\n" }
        return file
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
