import CShmBusLinux
import ShmBusSystem

/// The memory of a segment before it has a header or seals: a memfd of `capacity`
/// bytes, mapped read-write by its writer alone.
///
/// A ``ChannelWriter`` makes one for its next generation while the current segment
/// fills up, and has it faulted in on the prefaulter's thread, so that the chunk that
/// causes a collection is copied into memory that is already there. Nobody else can
/// see it: its descriptor leaves the writer only once ``SegmentWriter`` has written
/// the header and sealed it. A writer that reuses memory (format version 2) gives a
/// retired segment's memory to a later generation only once no reader's lease holds
/// it (ChannelWriter+Reuse.swift); every other writer's memory has only ever been one
/// generation's.
public final class SegmentMemory {
    public let capacity: UInt64
    let fileDescriptor: UnixFileDescriptor
    let mapping: MemoryMapping
    /// Sealed already: memory that carried an earlier generation.
    var isSealed = false
    /// How far the prefaulter got with it; the segment made from it keeps counting.
    public let prefault = PrefaultProgress()

    /// A new memfd named `shmbus:<channel>`, sized and mapped (`memfd_create`,
    /// `ftruncate`, `mmap`), with the huge-page advice made before anything touches it.
    public init(channel: String, capacity: UInt64, hugePages: Bool) throws(SegmentError) {
        self.capacity = capacity
        // On a failure below, `fd` is released and so closed with the half-made memory.
        let fd = try Memfd.create(name: "shmbus:\(channel.prefix(200))", size: Int(capacity))
        mapping = try MemoryMapping(fd: fd, length: Int(capacity), writable: true)
        // Advice only: a kernel without THP (EINVAL) gets ordinary pages, which
        // work the same, so a failure is not an error.
        if hugePages { _ = shmbus_advise_huge_pages(mapping.base, Int(capacity)) }
        fileDescriptor = fd
    }

    /// Asks `prefaulter` for the first `end` bytes.
    func prefault(upTo end: Int, with prefaulter: Prefaulter) {
        prefaulter.prefault(mapping, fd: fileDescriptor, progress: prefault, upTo: end)
    }
}
