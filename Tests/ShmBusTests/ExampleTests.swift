import DBus
import Foundation
import Glibc
import ShmBus
import ShmBusSystem
import TestSupport
import Testing

/// The examples in examples/ run against a real bus and registry.
@Suite struct ExampleTests {
    @Test func theScreenshotPairHandsOverAFourKImage() async throws {
        let fixture = try await RegistryFixture()
        let (published, out, err) = try await BuiltProducts.run(BuiltProducts.path("screenshot-publisher"), ["--bus", fixture.address])
        #expect(published == .exited(0), "\(err)")
        #expect(out.contains("published \(3840 * 2160 * 4) bytes as screenshots/latest"))
        // The publisher has exited; the persistent screenshot is still there.
        let (viewed, view, viewErr) = try await BuiltProducts.run(BuiltProducts.path("screenshot-viewer"), ["--bus", fixture.address])
        #expect(viewed == .exited(0), "\(viewErr)")
        #expect(view.contains("screenshot: \(3840 * 2160 * 4) bytes, sequence 1"))
        // The same bytes as shmbus cat gives.
        let (catted, _, _) = try await fixture.run(["cat", "--channel", "screenshots", "--key", "latest", "--output", "/dev/null"])
        #expect(catted == .exited(0))
    }

    @Test func theCameraViewerSeesTheNewestFrames() async throws {
        let fixture = try await RegistryFixture()
        // Frames for half an hour at 30 a second, stopped below once the viewer has had
        // its 20: with 300 (10 s), a viewer started late on a loaded machine could see
        // the stream end before its 20th frame, and then wait for ever.
        let camera = try ChildProcess(BuiltProducts.path("camera-publisher"), ["--bus", fixture.address, "54000"], stdout: .pipe, stderr: .inherit)
        defer { camera.signal(SIGKILL) }
        // The viewer starts once the channel exists.
        let registry = try await fixture.client()
        let deadline = ContinuousClock.now + .seconds(60)
        while try await registry.channels().isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let (status, out, err) = try await BuiltProducts.run(BuiltProducts.path("camera-viewer"), ["--bus", fixture.address, "--futex", "20"])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("viewed 20 frames"))
        // The camera is still streaming; it has done its part.
        camera.signal(SIGTERM)
        _ = await camera.exit()
    }

    @Test func theShellWalkthroughUsesOnlyBusctlAndGdbus() async throws {
        let fixture = try await RegistryFixture()
        let (published, _, _) = try await fixture.run(["publish", "--channel", "walk/through", "--key", "k", "--persistent", "/etc/hostname"])
        #expect(published == .exited(0))
        let script = BuiltProducts.repositoryRoot.appendingPathComponent("examples/shell/walkthrough.sh").path
        let (status, out, err) = try await BuiltProducts.run("/bin/bash", [script, fixture.address])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("/org/shmbus/Registry1/channel/walk_2fthrough"))
        #expect(out.contains("\"walk/through\""))
        #expect(out.contains("'org.shmbus.Segment1'"))
    }
}
