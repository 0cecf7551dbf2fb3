import ArgumentParser
import Foundation

/// The systemd user units of `install-service --systemd` (dbus/systemd/): the registry
/// and the keeper, each `Type=dbus` with its bus name, so that systemd knows the
/// service is up when the name is taken, and each in a unit of its own, so that
/// restarting the registry does not stop the keeper that holds its persistent segments.
struct SystemdUnits {
    let directory: String

    static let registry = (name: "shmbus-registry.service", template: PackageResources.shmbus_registry_service)
    static let keeper = (name: "shmbus-keeper.service", template: PackageResources.shmbus_keeper_service)

    /// `$XDG_CONFIG_HOME/systemd/user`, where a user's own units go.
    static func defaultDirectory() -> String {
        let config = ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".config")
        return (config as NSString).appendingPathComponent("systemd/user")
    }

    /// Writes both units with `exec` as the binary. Nothing here needs systemd to run.
    func install(exec: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for unit in [Self.registry, Self.keeper] {
                let path = (directory as NSString).appendingPathComponent(unit.name)
                try InstallService.serviceFile(unit.template, exec: exec).write(toFile: path, atomically: true, encoding: .utf8)
                print("installed \(path) (ExecStart=\(exec) \(unit.name == Self.registry.name ? "daemon" : "keeper"))")
            }
        } catch {
            FileHandle.standardErrorWrite("shmbus: cannot write the systemd units into \(directory): \(error.localizedDescription)\n")
            throw ExitCode(73)
        }
    }
}
