import Glibc

/// A file or stdin, read straight into the chunk's shared memory.
///
/// Everything that can be found out before publishing is found out in `init`, before
/// the command opens a publisher (which registers a segment): that the input exists, can
/// be opened, is not a directory, and that a regular file's size is honest. Inputs
/// whose size is unknown or untrue are read into memory first, so that a read error
/// there, too, is reported before anything is published.
struct InputFile: ~Copyable {
    private let fd: Int32
    /// How messages name it: the path, or "stdin".
    let name: String
    let size: UInt64
    /// Stdin, a pipe, or a file whose size stat does not tell (procfs, sysfs).
    private let buffered: [UInt8]?

    init(path: String?) throws(FileFailure) {
        let name = path.flatMap { $0 == "-" ? nil : $0 } ?? "stdin"
        let (fd, size, buffered) = try Self.open(path == "-" ? nil : path)
        self.init(fd: fd, name: name, size: size, buffered: buffered)
    }

    private init(fd: Int32, name: String, size: UInt64, buffered: [UInt8]?) {
        self.fd = fd
        self.name = name
        self.size = size
        self.buffered = buffered
    }

    /// The descriptor to read from (or -1), the size, and the bytes if already read.
    private static func open(_ path: String?) throws(FileFailure) -> (Int32, UInt64, [UInt8]?) {
        guard let path else {
            let bytes = try readAll(STDIN_FILENO, name: "stdin")
            return (-1, UInt64(bytes.count), bytes)
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .posix(.noInput, "cannot open \(path)") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .posix(.noInput, "cannot open \(path)", errno: code)
        }
        // open(2) accepts a directory for reading; read(2) would then fail with EISDIR,
        // which used to end the input at once and publish an empty chunk.
        if info.st_mode & S_IFMT == S_IFDIR {
            close(fd)
            throw .posix(.noInput, "cannot publish \(path)", errno: EISDIR)
        }
        if info.st_mode & S_IFMT == S_IFREG, info.st_size > 0, lastByteIsThere(fd, size: info.st_size) {
            return (fd, UInt64(info.st_size), nil)
        }
        // procfs files report size 0 (/proc/self/mem, /proc/cpuinfo) and sysfs ones
        // 4096 whatever they hold: their size is what reading them gives.
        defer { close(fd) }
        let bytes = try readAll(fd, name: path)
        return (-1, UInt64(bytes.count), bytes)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Whether a regular file really holds `size` bytes: its last byte can be read.
    private static func lastByteIsThere(_ fd: Int32, size: off_t) -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = pread(fd, &byte, 1, size - 1)
            if n < 0, errno == EINTR { continue }
            return n == 1
        }
    }

    private static func readAll(_ fd: Int32, name: String) throws(FileFailure) -> [UInt8] {
        var bytes: [UInt8] = []
        var block = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = block.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            // EISDIR (stdin redirected from a directory), EIO (/proc/self/mem at 0), …
            guard n >= 0 else { throw .posix(.readFailed, "cannot read \(name)") }
            if n == 0 { return bytes }
            bytes.append(contentsOf: block[0..<n])
        }
    }

    /// Fills `buffer` (exactly `size` bytes), reporting progress.
    func read(into buffer: UnsafeMutableRawBufferPointer, progress: (UInt64) -> Void) throws(FileFailure) {
        if let buffered {
            buffered.withUnsafeBytes { buffer.copyMemory(from: $0) }
            progress(size)
            return
        }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, min(8 << 20, buffer.count - done), off_t(done))
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw .posix(.readFailed, "cannot read \(name)") }
            guard n > 0 else { throw FileFailure(.readFailed, "cannot read \(name): it ended after \(done) of \(size) bytes (changed while publishing?)") }
            done += n
            progress(UInt64(done))
        }
    }
}
