import DBus
import Foundation
import Glibc
import ShmBusSystem
import TestSupport
import Testing
import ThumbnailerProtocol

/// examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.conf, the example's
/// system-bus policy, in a real `dbus-daemon` configured like the system bus (method
/// calls denied unless allowed): an ordinary user may call Thumbnail with a memfd and
/// introspect, may not own the name (so cannot pose as the thumbnailer) nor call what
/// the policy does not list; root owns it. (SystemBusPolicyTests' bus, with this
/// policy included instead of the registry's.)
@Suite(.enabled(if: AccessUsers.isRoot, AccessUsers.needsRoot))
struct ThumbnailerPolicyTests {
    @Test func anOrdinaryUserCallsButCannotPoseAsTheThumbnailer() async throws {
        try AccessUsers.prepare()
        let directory = URL(fileURLWithPath: "/tmp/shmbus-thumbnail-policy-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        defer { try? FileManager.default.removeItem(at: directory) }
        let (bus, address) = try await SystemBusPolicyTests.systemLikeBus(
            in: directory, policy: "examples/thumbnailer/dbus/org.shmbus.examples.Thumbnailer1.conf")
        defer {
            bus.signal(SIGTERM)
            _ = bus.waitUntilExit()
        }
        let users = UserProcesses()
        defer { users.stopAll() }
        let service = BuiltProducts.path("thumbnailer-service")
        // An ordinary user may not own the name.
        let squatter = try await users.run(as: AccessUsers.a, service, ["--bus", address, "--idle-exit", "0"])
        #expect(squatter.status == .exited(1) && squatter.stderr.contains("AccessDenied"), "\(squatter)")
        // Root may.
        let served = try ChildProcess(service, ["--bus", address, "--idle-exit", "0"], stdin: .null, stdout: .null, stderr: .inherit)
        defer {
            served.signal(SIGTERM)
            _ = served.waitUntilExit()
        }
        let watcher = try await DBusConnection.connect(to: .address(address))
        defer { watcher.close() }
        let deadline = ContinuousClock.now + .seconds(30)
        while try await watcher.nameOwner(of: Thumbnailer1.busName) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(try await watcher.nameOwner(of: Thumbnailer1.busName) != nil, "the thumbnailer did not take its name")
        // The ordinary user sends a 1024 × 1024 image (4 MiB, a memfd) and gets its thumbnail.
        let input = directory.appendingPathComponent("image.rgba")
        var pixels = [UInt8](repeating: 255, count: 1024 * 1024 * 4)
        for i in 0..<(1024 * 1024) {
            pixels[i * 4] = UInt8(i % 251)
            pixels[i * 4 + 1] = UInt8(i % 241)
            pixels[i * 4 + 2] = UInt8(i % 239)
        }
        try Data(pixels).write(to: input)
        let output = directory.appendingPathComponent("thumbnail.rgba").path
        let client = try await users.run(
            as: AccessUsers.a, BuiltProducts.path("thumbnailer-client"),
            ["--bus", address, "--max-side", "64", input.path, "1024", "1024", output])
        #expect(client.status == .exited(0) && client.stdout.contains("64x64 AB24, 16384 bytes (inline)"), "\(client)")
        let thumbnail = [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))
        // Pixel (0, 0) of the thumbnail is the image's (8, 8): the centre of its 16 × 16 box.
        let centre = (8 * 1024 + 8) * 4
        #expect(Array(thumbnail.prefix(4)) == Array(pixels[centre..<centre + 4]))
        // Introspection is allowed; what the policy does not list is not.
        let introspected = try await users.run(
            as: AccessUsers.a, "/usr/bin/gdbus",
            ["introspect", "--address", address, "--dest", Thumbnailer1.busName, "--object-path", Thumbnailer1.path.rawValue])
        #expect(introspected.status == .exited(0) && introspected.stdout.contains("Thumbnail(in  (a{sv}ayahtt) image"), "\(introspected)")
        let properties = try await users.run(
            as: AccessUsers.a, "/usr/bin/gdbus",
            ["call", "--address", address, "--dest", Thumbnailer1.busName, "--object-path", Thumbnailer1.path.rawValue,
             "--method", "org.freedesktop.DBus.Properties.GetAll", Thumbnailer1.declaration.name])
        #expect(properties.status != .exited(0) && properties.stderr.contains("AccessDenied"), "\(properties)")
    }
}
