import CShmBusLinux
import SharedSegments

/// The payloads the test publishers write: the chunk's sequence, a checksum of the
/// rest (`shmbus_mix64`, seed 11), then bytes derived from the sequence. Any reader can
/// check a chunk on its own, and a test can rebuild the exact bytes of any sequence.
public enum TestPayload {
    /// Writes the payload of chunk `sequence` into `buffer` (at least 16 bytes).
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer, sequence: UInt64) {
        var state = sequence &* 0x9E37_79B9_7F4A_7C15 | 1
        var i = 16
        while i + 8 <= buffer.count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            buffer.storeBytes(of: state, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < buffer.count { buffer[i] = UInt8(truncatingIfNeeded: i); i += 1 }
        buffer.storeBytes(of: sequence, toByteOffset: 0, as: UInt64.self)
        let sum = shmbus_mix64(buffer.baseAddress! + 16, buffer.count - 16, 11)
        buffer.storeBytes(of: sum, toByteOffset: 8, as: UInt64.self)
    }

    /// Whether `chunk` holds the payload of its own sequence, intact.
    public static func check(_ chunk: Chunk) -> Bool {
        chunk.withUnsafeBytes { bytes in
            guard bytes.count >= 16 else { return false }
            let sequence = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            let sum = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            return sequence == chunk.sequence && sum == shmbus_mix64(bytes.baseAddress! + 16, bytes.count - 16, 11)
        }
    }

    /// `shmbus_mix64` with seed 0 over the whole payload of `sequence` at `size` bytes:
    /// what `shmbus subscribe --checksum` prints for it.
    public static func wholeChecksum(sequence: UInt64, size: Int) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: size)
        return bytes.withUnsafeMutableBytes { buffer in
            fill(buffer, sequence: sequence)
            return shmbus_mix64(buffer.baseAddress, buffer.count, 0)
        }
    }
}
