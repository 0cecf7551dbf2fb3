import ShmBusSystem
import SystemPackage

/// What went wrong with a segment, saying what and where.
public struct SegmentError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The descriptor is not a memfd.
        case notMemfd
        /// The descriptor lacks seals this use requires.
        case notSealed
        /// The file is smaller than the header or than the capacity the header declares.
        case tooSmall
        /// The header is invalid.
        case badHeader
        /// A record is invalid.
        case badRecord
        /// The doorbell is invalid.
        case badDoorbell
        /// An argument is invalid (a channel name, a key, a size).
        case invalidArgument
        /// The data does not fit.
        case capacityExceeded
        /// The segment was retired; append to its successor.
        case retired
        /// The segment's memory went, or is going, to a later generation: whoever
        /// asked for this generation comes too late (docs/FORMAT.md, "Reused memory").
        case reclaimed
        /// A segment whose memory is reused (version 2) read without a lease.
        case leaseRequired
        /// A system call failed.
        case system(Errno)
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// A failed system call, with its errno, call and context in the message.
    public init(_ error: SystemError) {
        self.init(.system(error.errno), error.description)
    }

    static func system(_ call: String, _ errno: Errno) -> SegmentError {
        SegmentError(.system(errno), "\(call) failed: \(errno) (errno \(errno.rawValue))")
    }

    static func badRecord(at offset: UInt64, _ what: String) -> SegmentError {
        SegmentError(.badRecord, "record at offset \(offset): \(what)")
    }

    static func badHeader(_ what: String) -> SegmentError {
        SegmentError(.badHeader, "segment header: \(what)")
    }
}
