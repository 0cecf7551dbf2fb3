import Foundation
import TestSupport
import Testing

extension BridgeTests {
    /// The bench's bridge part runs and every message arrives; its figures are not
    /// judged here (docs/BENCHMARKS.md has them).
    @Test("shmbus bench --only bridge --quick: both ways store every message, for each chunk size")
    func theBridgeBenchmarkStoresEveryMessage() async throws {
        let (status, out, err) = try await BuiltProducts.run(
            BuiltProducts.path("shmbus"), ["bench", "--quick", "--json", "--only", "bridge"])
        #expect(status == .exited(0), "\(err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let bridge = try #require(json["bridge"] as? [[String: Any]])
        #expect(bridge.map { $0["chunkSize"] as? Int } == [64, 1 << 20])
        for part in bridge {
            #expect(part["complete"] as? Bool == true, "every message stored: \(part)")
            #expect((part["bridgeSeconds"] as? [Double])?.count == 1)
            #expect((part["rawSeconds"] as? [Double])?.count == 1)
        }
        #expect(json["blobs"] as? [Any] == nil || (json["blobs"] as? [Any])?.isEmpty == true, "only the part named ran")
    }
}
