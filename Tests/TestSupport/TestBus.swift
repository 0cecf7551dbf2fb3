import DBus
import Foundation
import ShmBusTesting

/// One real `dbus-daemon` per test process, on a private address, shared by the tests
/// of this target (they use distinct names and paths, so they can run in parallel).
public enum TestBus {
    private static let started: Result<PrivateBus, any Error> = Result { try PrivateBus() }

    public static var shared: PrivateBus {
        get throws { try started.get() }
    }

    /// A new connection to the shared bus.
    public static func connect() async throws -> DBusConnection {
        try await DBusConnection.connect(to: shared.bus)
    }

    /// A unique, valid suffix for names and paths of one test.
    public static func uniqueSuffix() -> String {
        "t\(UInt32.random(in: 0...UInt32.max))"
    }
}
