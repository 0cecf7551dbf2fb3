import CShmBusLinux
import Glibc
import SharedSegments
import ShmBusSystem
import SystemPackage

/// A blob's payload, readable: the inline bytes, or a read-only mapping of the memfd's
/// window that copies nothing. The mapping lives as long as this value (and its copies).
public struct BlobBytes: Sendable {
    enum Backing: Sendable {
        case array([UInt8])
        case mapping(MemoryMapping, start: Int)
    }

    let backing: Backing
    /// The payload's length in bytes.
    public let count: Int

    /// Calls `body` with the payload. For a memfd blob the bytes are shared memory: a
    /// blob that is not ``Blob/isImmutable`` may change under `body`.
    public func withUnsafeBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        switch backing {
        case .array(let bytes):
            let outcome = bytes.withUnsafeBytes { buffer in Swift.Result { () throws(Failure) in try body(buffer) } }
            return try outcome.get()
        case .mapping(let mapping, let start):
            return try withExtendedLifetime(mapping) { () throws(Failure) in
                try body(UnsafeRawBufferPointer(start: mapping.base + start, count: count))
            }
        }
    }

    /// The payload copied into an array.
    public var array: [UInt8] {
        switch backing {
        case .array(let bytes): bytes
        case .mapping: withUnsafeBytes { Array($0) }
        }
    }

    /// Faults the whole mapping in at once (`madvise(MADV_POPULATE_READ)`, Linux 5.14),
    /// instead of page by page as a first read would; a no-op for inline bytes and where
    /// the kernel does not support it.
    public func prefetch() {
        guard case .mapping(let mapping, let start) = backing, count > 0 else { return }
        _ = shmbus_populate_read(mapping.base + start, count)
    }
}

extension Blob {
    /// The payload, readable without a copy: inline bytes as they are, a memfd's window
    /// mapped `PROT_READ`, `MAP_SHARED` (`mmap` from the page below `offset`, as `mmap`
    /// wants a page-aligned file offset).
    public func map() throws(BlobError) -> BlobBytes {
        switch storage {
        case .inline(let bytes):
            return BlobBytes(backing: .array(bytes), count: bytes.count)
        case .memfd(let fd, let offset, let length):
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let start = offset % page
            do throws(SegmentError) {
                let mapping = try MemoryMapping(fd: fd, fileOffset: offset - start, length: start + length, writable: false)
                return BlobBytes(backing: .mapping(mapping, start: start), count: length)
            } catch {
                let errno: Errno = if case .system(let errno) = error.kind { errno } else { .invalidArgument }
                throw BlobError(SystemError(errno, call: "mmap", context: "\(fd), \(length) bytes at \(offset), PROT_READ"), "cannot map the blob")
            }
        }
    }

    /// The payload copied into an array (a convenience; ``map()`` copies nothing).
    public func bytes() throws(BlobError) -> [UInt8] {
        try map().array
    }
}
