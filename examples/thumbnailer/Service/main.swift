// The example thumbnailer: serves org.shmbus.examples.Thumbnailer1 (dbus/, generated
// into Protocol/) on the bus that activated it, or the one --bus names, until it has
// been idle for --idle-exit seconds (default 30; 0: never) or its bus has gone.
//
//   swift run thumbnailer-service [--bus ADDRESS] [--idle-exit SECONDS]
import DBus
import Foundation
import Locking
import ShmBus
import ThumbnailerProtocol

do {
    // Activated: DBUS_STARTER_ADDRESS names the bus that started us.
    var bus = ProcessInfo.processInfo.environment["DBUS_STARTER_ADDRESS"].map { DBusConnection.Bus.address($0) } ?? .session
    var idleExit = 30.0
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        switch argument {
        case "--bus": if let value = arguments.next() { bus = .init(parsing: value) }
        case "--idle-exit": if let value = arguments.next().flatMap(Double.init) { idleExit = value }
        default: throw DBusError.invalidArgument("usage: thumbnailer-service [--bus ADDRESS] [--idle-exit SECONDS]")
        }
    }
    let connection = try await DBusConnection.connect(to: bus)
    let lastCall = Lock(ContinuousClock.now)
    let export = try await connection.export(
        [Thumbnailer1.interface(implementedBy: Thumbnailer(lastCall: lastCall))], at: Thumbnailer1.path)
    guard try await connection.requestName(Thumbnailer1.busName) == .primaryOwner else {
        throw DBusError.failed("\(Thumbnailer1.busName) is already owned on the \(bus)")
    }
    FileHandle.standardError.write(Data("thumbnailer-service: serving \(Thumbnailer1.busName) on the \(bus)\n".utf8))
    // Until idle for long enough, or the bus is gone (nothing could call us any more).
    while connection.isConnected, idleExit == 0 || lastCall.withLock({ $0 }).duration(to: .now) < .seconds(idleExit) {
        try await Task.sleep(for: .milliseconds(500))
    }
    withExtendedLifetime(export) {}
    connection.close()
} catch {
    FileHandle.standardError.write(Data("thumbnailer-service: \(error)\n".utf8))
    exit(1)
}
