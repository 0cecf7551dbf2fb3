import CShmBusLinux
import DBus
import ShmBus

/// `org.shmbus.testing.BlobEcho1` (dbus/testing/): the generated contract served, for the
/// blob tests and `shmbus bench`. Every argument reaches it decoded and checked by the
/// generated dispatch; a blob that breaks docs/BLOBS.md never gets here.
public struct BlobEchoService: BlobEcho1.Implementation {
    public static let path: ObjectPath = "/org/shmbus/testing/BlobEcho1"

    public init() {}

    /// The blob as it came: its sealed memfd goes back as it is.
    public func echo(blob: Blob, call: DBusMethodCall) async throws -> Blob { blob }

    /// A new blob with the same bytes and attributes, in the argument's form: a memfd is
    /// made and sealed here (a reply of the service's own memory).
    public func copy(blob: Blob, call: DBusMethodCall) async throws -> Blob {
        let bytes = try blob.map()
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(BlobError) in
                try Blob(copying: buffer, attributes: blob.attributes, threshold: blob.isInline ? Blob.inlineLimit + 1 : 0)
            }
        }
        return try result.get()
    }

    public func echoBytes(bytes: [UInt8], call: DBusMethodCall) async throws -> [UInt8] { bytes }

    public func inspect(blob: Blob, call: DBusMethodCall) async throws -> (
        inline: Bool, immutable: Bool, length: UInt64, checksum: UInt64, attributes: [String: DBusVariant]
    ) {
        let checksum = try blob.map().withUnsafeBytes { Self.checksum($0) }
        return (blob.isInline, blob.isImmutable, UInt64(blob.length), checksum, blob.attributes.dbusDictionary)
    }

    /// FORMAT.md's mix64 of `bytes` with seed 0: what `Inspect` reports.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        shmbus_mix64(bytes.baseAddress, bytes.count, 0)
    }

    /// Exports the service on `connection` at ``path``.
    public static func export(on connection: DBusConnection) async throws -> DBusExport {
        try await connection.export([BlobEcho1.interface(implementedBy: BlobEchoService())], at: path)
    }
}
