import Glibc
import SharedSegments
import ShmBusSystem

/// Making blobs: from bytes, by writing in place, from a file. Each chooses the form by
/// the payload's length against `threshold` (docs/BLOBS.md, "The threshold") and seals
/// a memfd before the blob exists.
extension Blob {
    /// A blob of `bytes`: inline below `threshold`, else copied into a new sealed memfd
    /// (`memfd_create`, `write(2)`, `fcntl(F_ADD_SEALS)`).
    public init(_ bytes: [UInt8], attributes: ChunkAttributes = ChunkAttributes(), threshold: Int = Blob.defaultThreshold) throws(BlobError) {
        if bytes.count < Self.effectiveThreshold(threshold) {
            self.init(storage: .inline(bytes), attributes: attributes, isImmutable: true)
            return
        }
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(BlobError) in try Self.sealedMemfd(copying: buffer) }
        }
        self.init(storage: .memfd(try result.get(), offset: 0, length: bytes.count), attributes: attributes, isImmutable: true)
    }

    /// A blob of the bytes `buffer` holds (any memory: another blob's view, a mapping),
    /// copied as ``init(_:attributes:threshold:)`` copies an array, with no array between.
    public init(copying buffer: UnsafeRawBufferPointer, attributes: ChunkAttributes = ChunkAttributes(), threshold: Int = Blob.defaultThreshold)
        throws(BlobError)
    {
        if buffer.count < Self.effectiveThreshold(threshold) {
            self.init(storage: .inline(Array(buffer)), attributes: attributes, isImmutable: true)
            return
        }
        self.init(storage: .memfd(try Self.sealedMemfd(copying: buffer), offset: 0, length: buffer.count), attributes: attributes, isImmutable: true)
    }

    /// A blob of `length` bytes that `body` writes in place: into an array when it goes
    /// inline, else straight into the memfd's shared mapping (`ftruncate`, `mmap(PROT_READ
    /// | PROT_WRITE, MAP_SHARED)`), which is unmapped (`munmap`) before the memfd is sealed
    /// with `F_SEAL_WRITE`. The buffer starts zeroed. Rethrows `body`'s error as it is
    /// (the blob is discarded); its own failures are ``BlobError``s.
    public init(
        length: Int, attributes: ChunkAttributes = ChunkAttributes(), threshold: Int = Blob.defaultThreshold,
        writing body: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        guard length >= 0 else { throw BlobError(.outOfBounds, "a blob's length cannot be \(length)") }
        if length < Self.effectiveThreshold(threshold) {
            var bytes = [UInt8](repeating: 0, count: length)
            try bytes.withUnsafeMutableBytes { try body($0) }
            self.init(storage: .inline(bytes), attributes: attributes, isImmutable: true)
            return
        }
        let fd = try Self.newMemfd(size: length)
        let address = fd.withRawValue { mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, $0, 0) }
        guard let address, address != MAP_FAILED else {
            throw BlobError(SystemError.current(call: "mmap", context: "\(length) bytes, PROT_READ|PROT_WRITE"), "cannot map a new blob")
        }
        // F_SEAL_WRITE fails with EBUSY while a writable mapping exists: unmap first,
        // whatever the body did.
        do {
            try body(UnsafeMutableRawBufferPointer(start: address, count: length))
        } catch {
            munmap(address, length)
            throw error
        }
        munmap(address, length)
        do throws(SystemError) {
            try fd.addSeals(Self.seals)
        } catch {
            throw BlobError(error, "cannot seal a new blob")
        }
        self.init(storage: .memfd(fd, offset: 0, length: length), attributes: attributes, isImmutable: true)
    }

    /// A blob of the file `path`'s bytes (all of them from `offset`, or `length`), copied
    /// in the kernel when it goes as a memfd; see ``init(copying:offset:length:attributes:threshold:)``.
    public init(
        contentsOf path: String, offset: Int = 0, length: Int? = nil, attributes: ChunkAttributes = ChunkAttributes(),
        threshold: Int = Blob.defaultThreshold
    ) throws(BlobError) {
        let file: UnixFileDescriptor
        do throws(SystemError) { file = try UnixFileDescriptor.open(path, O_RDONLY) } catch { throw BlobError(error, "cannot open \(path)") }
        defer { try? file.close() }
        try self.init(copying: file, offset: offset, length: length, attributes: attributes, threshold: threshold)
    }

    /// A blob of `length` bytes of `file` from `offset` (to its end when nil). As a memfd,
    /// the bytes never pass through this process: `copy_file_range(2)` copies them, or
    /// `sendfile(2)` where the two file systems do not support that (from a disk file to
    /// a memfd since Linux 5.19), or `read`/`write` as the last resort (a pipe). Inline
    /// ones are read (`pread`). A file shorter than asked is an `out-of-bounds` error.
    public init(
        copying file: UnixFileDescriptor, offset: Int = 0, length: Int? = nil, attributes: ChunkAttributes = ChunkAttributes(),
        threshold: Int = Blob.defaultThreshold
    ) throws(BlobError) {
        let count: Int
        if let length {
            count = length
        } else {
            do throws(SystemError) { count = max(0, try file.size() - offset) } catch { throw BlobError(error, "cannot size the file") }
        }
        guard offset >= 0, count >= 0 else { throw BlobError(.outOfBounds, "offset \(offset) and length \(count) must not be negative") }
        if count < Self.effectiveThreshold(threshold) {
            var bytes = [UInt8](repeating: 0, count: count)
            let done = bytes.withUnsafeMutableBytes { buffer in
                file.withRawValue { fd in Self.readFully(fd, into: buffer, at: offset) }
            }
            guard done.error == nil else { throw BlobError(done.error!, "cannot read the file") }
            guard done.count == count else { throw BlobError(.outOfBounds, "the file ended \(done.count) bytes after \(offset), \(count) asked") }
            self.init(storage: .inline(bytes), attributes: attributes, isImmutable: true)
            return
        }
        let memfd = try Self.newMemfd(size: 0)
        try Self.copy(count, from: file, at: offset, into: memfd)
        do throws(SystemError) { try memfd.addSeals(Self.seals) } catch { throw BlobError(error, "cannot seal a new blob") }
        self.init(storage: .memfd(memfd, offset: 0, length: count), attributes: attributes, isImmutable: true)
    }

    // MARK: The calls underneath

    static func effectiveThreshold(_ threshold: Int) -> Int { min(max(threshold, 0), inlineLimit + 1) }

    /// `memfd_create("shmbus-blob", MFD_CLOEXEC | MFD_ALLOW_SEALING)`, then `ftruncate(size)`.
    static func newMemfd(size: Int) throws(BlobError) -> UnixFileDescriptor {
        do throws(SystemError) {
            let fd = try UnixFileDescriptor.memfd(name: "shmbus-blob")
            if size > 0 { try fd.truncate(to: size) }
            return fd
        } catch {
            throw BlobError(error, "cannot make a blob's memfd")
        }
    }

    /// A new memfd holding `buffer` (`write(2)` until done), sealed. `write(2)` rather
    /// than a mapping: shmem allocates each page as it copies into it, where a fresh
    /// writable mapping takes a page fault per page first (64 MiB: 31 ms against 55 ms
    /// on the benchmark machine, docs/BENCHMARKS.md, "Blob calls").
    static func sealedMemfd(copying buffer: UnsafeRawBufferPointer) throws(BlobError) -> UnixFileDescriptor {
        let fd = try newMemfd(size: 0)
        do throws(SystemError) {
            var written = 0
            while written < buffer.count { written += try fd.write(UnsafeRawBufferPointer(rebasing: buffer[written...])) }
            try fd.addSeals(seals)
        } catch {
            throw BlobError(error, "cannot fill a blob's memfd")
        }
        return fd
    }

    /// Copies `count` bytes of `file` from `offset` to the start of the empty `memfd`.
    static func copy(_ count: Int, from file: UnixFileDescriptor, at offset: Int, into memfd: UnixFileDescriptor) throws(BlobError) {
        var done = 0
        var useSendfile = false
        while done < count {
            let step: Int
            do throws(SystemError) {
                step =
                    useSendfile
                    ? try file.sendFile(from: offset + done, to: memfd, length: count - done)
                    : try file.copyFileRange(from: offset + done, to: memfd, at: done, length: count - done)
            } catch {
                // Another file system, or one that cannot: sendfile goes on at the memfd's
                // position, which is still `done` (copy_file_range does not move it).
                guard !useSendfile, [EXDEV, EINVAL, EOPNOTSUPP, ENOSYS].contains(error.errno.rawValue) else {
                    throw BlobError(error, "cannot copy the file into a blob")
                }
                useSendfile = true
                if done > 0 {
                    do throws(SystemError) { _ = try memfd.seek(to: done) } catch { throw BlobError(error, "cannot copy the file into a blob") }
                }
                continue
            }
            guard step > 0 else { throw BlobError(.outOfBounds, "the file ended \(done) bytes after \(offset), \(count) asked") }
            done += step
        }
    }

    /// `pread(2)` until `buffer` is full or the file ends: the bytes read, or the error.
    static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> (count: Int, error: SystemError?) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                return (done, SystemError.current(call: "pread", context: "fd \(fd), \(buffer.count - done) bytes at \(offset + done)"))
            }
            if n == 0 { break }
            done += n
        }
        return (done, nil)
    }
}
