import Foundation
import Glibc
import SharedSegments
import ShmBusSystem

/// The floor of the small-chunk part: writing records into shared memory that is new
/// to the process, as every chunk of a flood is (each segment is a new memfd), against
/// writing them into pages already faulted in. No ShmBus code runs here.
struct FreshMemoryFloor: Encodable, Sendable {
    /// The bytes one 64-byte chunk takes in a segment: header and payload, aligned.
    var recordBytes: Int
    var freshRecordsPerSecond: Double
    var warmRecordsPerSecond: Double
}

extension BenchRun {
    /// Fills a new memfd of `total` bytes, mapped shared, with `recordBytes`-byte
    /// records, once (first touch: a fault and a zeroed page per 4 KiB) and once more
    /// over the same pages; the median of `rounds` rounds, each with a new memfd.
    func freshMemoryFloor(chunkSize: Int, total: Int, rounds: Int) throws -> FreshMemoryFloor {
        let L = SegmentLayout.self
        let recordBytes = (L.recordKeyOffset + chunkSize + L.alignment - 1) / L.alignment * L.alignment
        let records = total / recordBytes
        let template = [UInt8](repeating: 0x5A, count: recordBytes)
        var fresh: [Double] = []
        var warm: [Double] = []
        for _ in 0..<rounds {
            let fd = try Memfd.create(name: "shmbus-bench-floor", size: total)
            guard let base = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0), base != MAP_FAILED else {
                throw SystemError.current(call: "mmap", context: "the floor memfd of \(total) bytes")
            }
            defer { munmap(base, total) }
            for pass in 0..<2 {
                let start = BenchClock.now()
                template.withUnsafeBytes { record in
                    for index in 0..<records {
                        (base + index * recordBytes).copyMemory(from: record.baseAddress!, byteCount: recordBytes)
                    }
                }
                let rate = Double(records) / (Double(BenchClock.now() - start) / 1e9)
                if pass == 0 { fresh.append(rate) } else { warm.append(rate) }
            }
        }
        return FreshMemoryFloor(
            recordBytes: recordBytes, freshRecordsPerSecond: fresh.sorted()[rounds / 2], warmRecordsPerSecond: warm.sorted()[rounds / 2])
    }
}
