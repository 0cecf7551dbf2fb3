import Glibc

/// A failure of the command's own input or output (not of the bus or a segment), with
/// the sysexits.h code a script can tell apart: the registry is fine, the file is not.
struct FileFailure: Error, CustomStringConvertible {
    enum Kind {
        /// The input does not exist or cannot be opened or read as a file (EX_NOINPUT).
        case noInput
        /// Reading the input failed after it was opened (EX_IOERR).
        case readFailed
        /// The output cannot be created or written (EX_CANTCREAT).
        case cannotCreate

        var exitCode: Int32 {
            switch self {
            case .noInput: 66
            case .readFailed: 74
            case .cannotCreate: 73
            }
        }
    }

    var kind: Kind
    /// One line, saying what and where: "cannot read /tmp/x: Is a directory".
    var message: String

    init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// `message` followed by the reason `errno` gives.
    static func posix(_ kind: Kind, _ message: String, errno code: Int32 = errno) -> FileFailure {
        FileFailure(kind, "\(message): \(String(cString: strerror(code)))")
    }

    var description: String { message }
}
