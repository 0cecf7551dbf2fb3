import DBus
import Foundation
import ShmBus
import TestSupport
import Testing

/// The demo and the benchmark keep working (correctness only: timings are never asserted).
@Suite struct CommandTests {
    @Test(.timeLimit(.minutes(5))) func theDemoMovesFramesAndABlobIntact() async throws {
        // A bus without a registry: the demo starts its own daemon.
        let fixture = try await RegistryFixture(startDaemon: false)
        let (status, out, err) = try await fixture.run(["demo", "--frames", "20", "--frame-size", "64KiB", "--blob-size", "80MiB"])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("registry  started `shmbus daemon`"))
        let frames = try #require(out.split(separator: "\n").first { $0.hasPrefix("frames") })
        #expect(frames.contains("20/20") && frames.hasSuffix("yes"))
        let blob = try #require(out.split(separator: "\n").first { $0.hasPrefix("blob") })
        #expect(blob.contains("1/1") && blob.contains("80.0 MiB") && blob.hasSuffix("yes"))
        #expect(out.contains("D-Bus itself cannot carry the blob"))
        // The daemon it started is gone again.
        let connection = try await fixture.connect()
        #expect(try await connection.nameOwner(of: ShmBusProtocol.registryName) == nil)
    }

    @Test(.timeLimit(.minutes(5))) func theQuickBenchmarkRunsEveryPartCorrectly() async throws {
        let (status, out, err) = try await BuiltProducts.run(BuiltProducts.path("shmbus"), ["bench", "--quick", "--json"])
        #expect(status == .exited(0), "\(err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let machine = try #require(json["machine"] as? [String: Any])
        #expect((machine["cores"] as? Int ?? 0) > 0)
        let blobs = try #require(json["blobs"] as? [[String: Any]])
        #expect(blobs.map { $0["size"] as? Int } == [4096, 1 << 20, 16 << 20])
        for blob in blobs {
            #expect(blob["errors"] as? Int == 0)
            #expect(((blob["shmbus"] as? [String: Any])?["count"] as? Int) == 3)
            #expect(((blob["shmbusFutex"] as? [String: Any])?["count"] as? Int) == 3, "the futex path too")
            #expect(((blob["shmbusReuse"] as? [String: Any])?["count"] as? Int) == 3, "and with reused memory")
            #expect(blob["dbus"] != nil)
        }
        let throughput = try #require(json["throughput"] as? [[String: Any]])
        #expect(throughput.map { $0["subscribers"] as? Int } == [1, 4, 1])
        #expect(throughput.map { $0["batch"] as? Int } == [0, 0, 100], "one by one, then in batches")
        let floor = try #require(json["throughputFloor"] as? [String: Any])
        #expect((floor["freshRecordsPerSecond"] as? Double ?? 0) > 0)
        for run in throughput {
            let published = run["published"] as? Int ?? 0
            #expect(published > 0)
            for subscriber in run["subscriberResults"] as? [[String: Any]] ?? [] {
                #expect(subscriber["received"] as? Int == published, "none lost")
                #expect(subscriber["missed"] as? Int == 0)
                #expect(subscriber["inOrder"] as? Bool == true)
            }
        }
        let latency = try #require(json["latency"] as? [String: Any])
        for path in ["busPath", "futexPath", "futexIteratorPath", "spinPath", "bareSignal", "bareFutex", "bareSpin"] {
            #expect(((latency[path] as? [String: Any])?["count"] as? Int) == 100, "\(path)")
        }
        // What the waiting threads burn is measured (a figure, never judged here).
        let cpu = try #require(latency["waiterCPU"] as? [String: Any])
        for path in ["futex", "spin", "bareSpin"] { #expect(cpu[path] is Double, "\(path)") }
        let views = try #require(json["views"] as? [String: Any])
        #expect((views["bigSize"] as? Int) == 16 << 20)
        let requests = try #require(json["requests"] as? [String: Any])
        #expect(requests["errors"] as? Int == 0, "every reply held its request's bytes")
        for path in ["shmbusBus", "shmbusFutex", "dbus"] {
            #expect(((requests[path] as? [String: Any])?["count"] as? Int ?? 0) > 0, "\(path)")
        }
        let calls = try #require(json["blobCalls"] as? [[String: Any]])
        #expect(calls.map { $0["size"] as? Int } == [4 << 10, 1 << 20])
        for call in calls {
            #expect(call["errors"] as? Int == 0, "every reply held the argument's bytes, in its form")
            for path in ["echo", "copy", "memfd", "dbus"] { #expect(((call[path] as? [String: Any])?["count"] as? Int ?? 0) > 0, "\(path)") }
        }
        #expect(json["ratios"] != nil)
    }

    @Test func theBenchmarkRunsOnlyThePartsNamedAndRefusesUnknownOnes() async throws {
        let shmbus = BuiltProducts.path("shmbus")
        let (refused, _, why) = try await BuiltProducts.run(shmbus, ["bench", "--quick", "--only", "blob"])
        #expect(refused == .exited(64), "a usage error, not an empty table")
        #expect(why.contains("'blob' is not one of blobs, latency, throughput, views, requests, blob-calls"), "\(why)")
        let (empty, _, whyEmpty) = try await BuiltProducts.run(shmbus, ["bench", "--quick", "--only", ","])
        #expect(empty == .exited(64), "\(whyEmpty)")

        let (status, out, err) = try await BuiltProducts.run(shmbus, ["bench", "--quick", "--only", "views"])
        #expect(status == .exited(0), "\(err)")
        #expect(out.contains("4. Zero copy"))
        for other in ["1. Blob transfer", "2. Notification latency", "3. Small-chunk throughput", "5. Request/response", "6. Blob calls"] {
            #expect(!out.contains(other), "\(other) did not run and is not printed")
        }
    }
}
