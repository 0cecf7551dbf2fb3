import DBus
import SharedSegments
import ShmBusSystem

/// A payload of any size for a D-Bus argument or reply (docs/BLOBS.md): inline bytes
/// when small, a sealed read-only memfd with an offset and a length when large, with
/// FORMAT.md's attributes beside it, all in the one D-Bus type `(a{sv}ayahtt)`.
///
/// `Blob` is `DBusCodable`, so a generated contract takes and returns it like any
/// other value: decoding a received blob runs every check of docs/BLOBS.md ("What the
/// receiver checks") and fails with `org.shmbus.Error.InvalidBlob` before a service's
/// implementation sees it. Make one from bytes (``init(_:attributes:threshold:)``), from
/// a file (``init(copying:offset:length:attributes:threshold:)``, a copy in the kernel)
/// or by writing in place (``init(length:attributes:threshold:writing:)``); read it
/// with ``map()``, a view into the read-only mapping that copies nothing.
///
/// The form is decided when the blob is made, by its length against the threshold, so
/// a blob sent many times is made (and its memfd sealed) once. A memfd is sealed
/// before the blob exists: nothing unsealed ever leaves the process.
public struct Blob: Sendable {
    /// Where the payload is.
    public enum Storage: Sendable {
        /// In the message, as `ay`.
        case inline([UInt8])
        /// In a sealed memfd, `length` bytes from `offset`. The descriptor is shared with
        /// whatever else holds it (a received message's value, a copy of this blob).
        case memfd(UnixFileDescriptor, offset: Int, length: Int)
    }

    public let storage: Storage
    /// FORMAT.md's attributes of the payload (content type, array, image, own names).
    public var attributes: ChunkAttributes
    /// Whether the bytes cannot change: inline, or a memfd sealed with `F_SEAL_WRITE`.
    /// A memfd sealed only with `F_SEAL_FUTURE_WRITE` may still be written through its
    /// sender's earlier mapping (docs/BLOBS.md, "Immutable or not").
    public let isImmutable: Bool

    init(storage: Storage, attributes: ChunkAttributes, isImmutable: Bool) {
        self.storage = storage
        self.attributes = attributes
        self.isImmutable = isImmutable
    }

    /// The payload's length in bytes.
    public var length: Int {
        switch storage {
        case .inline(let bytes): bytes.count
        case .memfd(_, _, let length): length
        }
    }

    /// Whether the payload travels in the message (`ay`) rather than as a memfd.
    public var isInline: Bool {
        if case .inline = storage { return true }
        return false
    }

    /// Payloads of fewer bytes than this go inline, the others as a memfd: ShmBus's
    /// measured default (docs/BLOBS.md, "The threshold"; docs/BENCHMARKS.md, "Blob calls").
    public static let defaultThreshold = 32 << 10

    /// The largest payload D-Bus carries inline: one array is at most 2^26 bytes. A
    /// threshold above it is lowered to it.
    public static let inlineLimit = 1 << 26

    /// The seals a blob's memfd gets here: final size, final bytes, final seals.
    static let seals: FileSeals = [.shrink, .grow, .write, .seal]
}

extension Blob: CustomStringConvertible {
    public var description: String {
        switch storage {
        case .inline(let bytes): "Blob(inline, \(bytes.count) bytes)"
        case .memfd(let fd, let offset, let length): "Blob(memfd \(fd), \(length) bytes at \(offset))"
        }
    }
}
