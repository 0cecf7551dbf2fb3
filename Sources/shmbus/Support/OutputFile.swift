import Glibc

/// Where a command writes bytes: stdout or a file it creates. Every failure is a
/// ``FileFailure`` of kind `cannotCreate` naming the target, so that a full disk or
/// `> /dev/full` ends with exit 73 and one line, not with a bus error.
final class OutputFile {
    private var fd: Int32
    /// How messages name it: a path, or "stdout".
    let name: String
    private let owned: Bool

    static func standardOutput() -> OutputFile { OutputFile(fd: STDOUT_FILENO, name: "stdout", owned: false) }

    private init(fd: Int32, name: String, owned: Bool) {
        self.fd = fd
        self.name = name
        self.owned = owned
    }

    /// Creates (or truncates) `path`.
    convenience init(creating path: String) throws(FileFailure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .posix(.cannotCreate, "cannot create \(path)") }
        self.init(fd: fd, name: path, owned: true)
    }

    /// Writes all of `bytes`, straight from wherever they are (a shared mapping).
    func write(_ bytes: UnsafeRawBufferPointer) throws(FileFailure) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, base + done, bytes.count - done)
            if n < 0, errno == EINTR { continue }
            // write(2) returns 0 only for a zero count; treat it as the error it would be.
            guard n > 0 else { throw .posix(.cannotCreate, "cannot write \(name)", errno: n == 0 ? EIO : errno) }
            done += n
        }
    }

    /// Closes a created file, reporting what close(2) reports: on NFS and some
    /// filesystems a failed write surfaces only here.
    func finish() throws(FileFailure) {
        guard owned, fd >= 0 else { return }
        defer { fd = -1 }
        guard close(fd) == 0 else { throw .posix(.cannotCreate, "cannot write \(name)") }
    }

    deinit {
        if owned, fd >= 0 { close(fd) }
    }
}

/// `mkdir -p`, with one line naming the component that failed (a regular file in the
/// way, a missing permission) instead of a Foundation error dump.
func makeDirectories(_ path: String) throws(FileFailure) {
    let absolute = path.hasPrefix("/")
    var prefix = absolute ? "/" : ""
    for component in path.split(separator: "/") {
        prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
        if mkdir(prefix, 0o755) == 0 { continue }
        let code = errno
        var info = stat()
        if code == EEXIST, stat(prefix, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { continue }
        throw .posix(.cannotCreate, "cannot create directory \(path)", errno: code == EEXIST ? ENOTDIR : code)
    }
}
