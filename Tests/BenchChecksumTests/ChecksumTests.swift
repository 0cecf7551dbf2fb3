import CShmBusBench
import Testing

/// `shmbus_sum64`, the benchmarks' "read every byte" checksum: the vectorized C loop
/// (whichever of its AVX-512, AVX2 and baseline bodies this CPU runs) against a plain Swift statement of
/// the same function, and the changes it must notice.
@Suite struct ChecksumTests {
    /// The function the C comment states, one word at a time.
    static func reference(_ bytes: [UInt8]) -> UInt64 {
        let lanes = 16
        var sum = [UInt64](repeating: 0, count: lanes), sumOfSums = sum
        var i = 0
        while i + 8 * lanes <= bytes.count {
            for lane in 0..<lanes {
                var word: UInt64 = 0
                for b in 0..<8 { word |= UInt64(bytes[i + 8 * lane + b]) << (8 * b) }
                sum[lane] &+= word
                sumOfSums[lane] &+= sum[lane]
            }
            i += 8 * lanes
        }
        var h = UInt64(bytes.count)
        for lane in 0..<lanes {
            h = (h ^ sum[lane]) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            h = (h ^ sumOfSums[lane]) &* 0xC2B2_AE3D_27D4_EB4F
            h ^= h >> 32
        }
        while i < bytes.count {
            h = (h ^ UInt64(bytes[i])) &* 0xC2B2_AE3D_27D4_EB4F
            h ^= h >> 32
            i += 1
        }
        return h
    }

    static func sum(_ bytes: [UInt8], offset: Int = 0) -> UInt64 {
        bytes.withUnsafeBytes { shmbus_sum64($0.baseAddress! + offset, $0.count - offset) }
    }

    static func pattern(_ count: Int, seed: UInt64 = 0x1234_5678) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    @Test(arguments: [0, 1, 7, 127, 128, 129, 4096, 65_536 + 77])
    func theVectorizedLoopComputesTheStatedFunction(count: Int) {
        let bytes = Self.pattern(count)
        #expect(Self.sum(bytes) == Self.reference(bytes))
        // Unaligned starts read the same bytes the same way.
        if count > 3 {
            #expect(Self.sum(bytes, offset: 3) == Self.reference(Array(bytes.dropFirst(3))))
        }
    }

    @Test func everyFlippedBitAndEveryBlockSwapChangesTheSum() {
        let bytes = Self.pattern(4096 + 5)
        let original = Self.sum(bytes)
        var undetected: [Int] = []
        for bit in 0..<(bytes.count * 8) {
            var changed = bytes
            changed[bit / 8] ^= 1 << (bit % 8)
            if Self.sum(changed) == original { undetected.append(bit) }
        }
        #expect(undetected == [], "flipped bits the sum did not notice")
        // Two 128-byte blocks swapped: the same words land on the same lanes, so a plain
        // per-lane sum would not see it; the sum of sums does.
        var swapped = bytes
        swapped.replaceSubrange(0..<128, with: bytes[256..<384])
        swapped.replaceSubrange(256..<384, with: bytes[0..<128])
        #expect(Self.sum(swapped) != original)
    }
}
