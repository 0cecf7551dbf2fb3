import DBus
import Foundation
import ShmBusTesting

/// The service end of the blob-call part: `org.shmbus.testing.BlobEcho1`, the generated
/// contract the tests also call, served in a process of its own.
extension BenchWorker {
    /// Serves BlobEcho1 until "quit" arrives on stdin; its ready line names the
    /// connection.
    func blobServer(_ bus: DBusConnection.Bus) async throws {
        let connection = try await DBusConnection.connect(to: bus)
        let export = try await BlobEchoService.export(on: connection)
        Output.line("ready \(connection.uniqueName)")
        while let line = readLine(), line != "quit" {}
        withExtendedLifetime(export) {}
        connection.close()
    }
}
