import CShmBusLinux
import Glibc
import Locking
import ShmBusSystem
import SystemPackage

/// A shared mapping of a file, unmapped (`munmap`) when the last reference goes.
///
/// Chunk views and `Data` values hold the mapping, so the memory they point into stays
/// mapped for as long as any of them lives, even after the segment is retired or
/// removed from the registry.
///
/// `@unchecked Sendable`: the base address and length never change after `mmap`, and
/// the mapping is released only in `deinit`, when no other reference exists. The bytes
/// themselves are shared memory that other processes write; every reader of them goes
/// through the validating accessors of this module.
public final class MemoryMapping: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int
    public let writable: Bool
    /// The 2 MiB blocks ``populate(offset:count:)`` has populated (MemoryMapping+Populate.swift).
    let populated = Lock(Set<Int>())

    /// Maps `length` bytes of `fd` from `fileOffset` (a multiple of the page size) shared
    /// (`mmap(MAP_SHARED)`), read-only unless `writable`. The descriptor is only
    /// borrowed: the mapping outlives it.
    public init(fd: UnixFileDescriptor, fileOffset: Int = 0, length: Int, writable: Bool) throws(SegmentError) {
        guard length > 0 else { throw SegmentError(.invalidArgument, "cannot map 0 bytes") }
        let protection = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        let address = fd.withRawValue { mmap(nil, length, protection, MAP_SHARED, $0, off_t(fileOffset)) }
        guard let address, address != MAP_FAILED else {
            throw SegmentError.system("mmap(\(length) bytes, \(writable ? "PROT_READ|PROT_WRITE" : "PROT_READ"))", Errno(rawValue: errno))
        }
        base = address
        self.length = length
        self.writable = writable
    }

    deinit {
        munmap(base, length)
    }

    // MARK: Reads (little-endian targets; offsets are checked by callers)

    @inline(__always)
    func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T {
        base.loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    @inline(__always)
    func loadAcquire64(_ offset: Int) -> UInt64 {
        shmbus_load_acquire_u64(base.advanced(by: offset).assumingMemoryBound(to: UInt64.self))
    }

    @inline(__always)
    func loadAcquire32(_ offset: Int) -> UInt32 {
        shmbus_load_acquire_u32(base.advanced(by: offset).assumingMemoryBound(to: UInt32.self))
    }

    func bytes(_ offset: Int, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: base.advanced(by: offset), count: count))
    }

    // MARK: Writes (writer's mapping only)

    @inline(__always)
    func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        base.storeBytes(of: value, toByteOffset: offset, as: T.self)
    }

    @inline(__always)
    func storeRelease64(_ value: UInt64, at offset: Int) {
        shmbus_store_release_u64(base.advanced(by: offset).assumingMemoryBound(to: UInt64.self), value)
    }

    @inline(__always)
    func storeRelease32(_ value: UInt32, at offset: Int) {
        shmbus_store_release_u32(base.advanced(by: offset).assumingMemoryBound(to: UInt32.self), value)
    }

    func store(bytes: [UInt8], at offset: Int) {
        bytes.withUnsafeBytes { base.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
}
