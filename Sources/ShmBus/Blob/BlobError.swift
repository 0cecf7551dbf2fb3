import DBus
import ShmBusSystem

/// Why a blob could not be made, sent or accepted.
///
/// A received blob that breaks docs/BLOBS.md is the sender's fault: ``Kind/invalid(_:)``
/// with the reason the document names, carried on the bus as
/// `org.shmbus.Error.InvalidBlob` with the message `"<reason>: <what>"`. A failure of
/// this process's own (a system call, memory) is ``Kind/system(_:)`` with the errno, the
/// call and its context, and goes on the bus as `org.freedesktop.DBus.Error.Failed`.
public struct BlobError: Error, Hashable, Sendable, CustomStringConvertible, DBusErrorConvertible {
    /// The reasons of docs/BLOBS.md, "What the receiver checks", by their names there.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        case form
        case attributes
        case notMemfd = "not-memfd"
        case notSealed = "not-sealed"
        case notReadable = "not-readable"
        case outOfBounds = "out-of-bounds"
    }

    public enum Kind: Sendable, Hashable {
        /// The blob breaks the convention (a peer's, or one made here with bad input).
        case invalid(Reason)
        /// A system call failed in this process.
        case system(SystemError)
    }

    public var kind: Kind
    /// What was wrong, without the reason's name.
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        kind = .invalid(reason)
        self.message = message
    }

    public init(_ error: SystemError, _ what: String) {
        kind = .system(error)
        message = "\(what): \(error)"
    }

    /// The D-Bus name of a refused blob.
    public static let invalidBlobName = "org.shmbus.Error.InvalidBlob"

    /// The reason, when the blob broke the convention.
    public var reason: Reason? {
        if case .invalid(let reason) = kind { return reason }
        return nil
    }

    public var description: String {
        switch kind {
        case .invalid(let reason): "\(reason.rawValue): \(message)"
        case .system: message
        }
    }

    public var dbusError: DBusError {
        switch kind {
        case .invalid: DBusError(name: Self.invalidBlobName, message: description)
        case .system: .failed(message)
        }
    }

    /// The blob error a D-Bus error reply carries: `org.shmbus.Error.InvalidBlob` with
    /// its reason; nil for any other error, or a message without a known reason.
    public init?(_ error: DBusError) {
        guard error.name == Self.invalidBlobName, let colon = error.message.firstIndex(of: ":"),
            let reason = Reason(rawValue: String(error.message[..<colon]))
        else { return nil }
        self.init(reason, String(error.message[error.message.index(after: colon)...].drop { $0 == " " }))
    }
}
