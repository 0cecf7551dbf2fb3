import DBus
import Glibc
import ShmBusSystem

/// A blob on the bus: the struct `(a{sv}ayahtt)` of docs/BLOBS.md, and the receiver's
/// checks, in the document's order, made before anyone uses a received blob.
extension Blob: DBusCodable {
    public static var dbusType: DBusType {
        .structure([.dictionary(key: .string, value: .variant), .array(.byte), .array(.unixFD), .uint64, .uint64])
    }

    public var dbusValue: DBusValue {
        switch storage {
        case .inline(let bytes):
            .structure([attributes.blobDBusValue, .bytes(bytes), .array(.unixFD, []), .uint64(0), .uint64(UInt64(bytes.count))])
        case .memfd(let fd, let offset, let length):
            .structure([attributes.blobDBusValue, .bytes([]), .array(.unixFD, [.unixFD(fd)]), .uint64(UInt64(offset)), .uint64(UInt64(length))])
        }
    }

    /// A received blob, checked (docs/BLOBS.md, "What the receiver checks"). A value of
    /// another D-Bus type is `InvalidArgs`; a blob that breaks the convention is
    /// `org.shmbus.Error.InvalidBlob` with the reason. The descriptor is the value's own
    /// (shared, not duplicated).
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let fields) = dbusValue, fields.count == 5, case .dictionary(.string, .variant, let entries) = fields[0],
            case .array(.unixFD, let fds) = fields[2], case .uint64(let offset) = fields[3], case .uint64(let length) = fields[4]
        else {
            throw .invalidArgument("expected a blob '\(Self.dbusType)', got '\(dbusValue.type)'")
        }
        let inline: [UInt8]
        switch fields[1] {
        case .bytes(let bytes): inline = bytes
        case .array(.byte, let values): inline = values.compactMap { if case .byte(let b) = $0 { b } else { nil } }
        default: throw .invalidArgument("expected a blob '\(Self.dbusType)', got '\(dbusValue.type)'")
        }
        do throws(BlobError) {
            self = try Self.checked(entries: entries, inline: inline, fds: fds, offset: offset, length: length)
        } catch {
            throw error.dbusError
        }
    }

    /// Checks 1–7 of docs/BLOBS.md.
    static func checked(entries: [DBusDictEntry], inline: [UInt8], fds: [DBusValue], offset: UInt64, length: UInt64) throws(BlobError) -> Blob {
        // 1. The form.
        guard fds.count <= 1 else { throw BlobError(.form, "\(fds.count) descriptors; a blob has none or one") }
        guard let fdValue = fds.first else {
            guard offset == 0, length == UInt64(inline.count) else {
                throw BlobError(.form, "an inline blob of \(inline.count) bytes says offset \(offset), length \(length)")
            }
            // 2. The attributes.
            let attributes = try ChunkAttributes(blobEntries: entries, payloadLength: inline.count)
            return Blob(storage: .inline(inline), attributes: attributes, isImmutable: true)
        }
        guard inline.isEmpty, length >= 1 else {
            throw BlobError(.form, "a memfd blob carries \(inline.count) inline bytes and length \(length); it needs none and ≥ 1")
        }
        guard case .unixFD(let fd) = fdValue else { throw BlobError(.form, "the descriptor is not an 'h'") }
        // 2. A length past Int.max is checked as Int.max: no extent an attribute can
        // describe lies between the two, and check 7 refuses such a blob anyway.
        let attributes = try ChunkAttributes(blobEntries: entries, payloadLength: Int(clamping: length))
        let immutable = try checkMemfd(fd, offset: offset, length: length)
        // Check 7 passed: offset + length ≤ the file's size, so both fit an Int.
        return Blob(storage: .memfd(fd, offset: Int(offset), length: Int(length)), attributes: attributes, isImmutable: immutable)
    }

    /// Checks 3–7 on a received descriptor (`fstat`, `readlink("/proc/self/fd/N")`,
    /// `fcntl(F_GET_SEALS)`, `fcntl(F_GETFL)`); returns whether `F_SEAL_WRITE` is set.
    static func checkMemfd(_ fd: UnixFileDescriptor, offset: UInt64, length: UInt64) throws(BlobError) -> Bool {
        let status: stat
        do throws(SystemError) { status = try fd.status() } catch { throw BlobError(error, "cannot inspect the blob's descriptor") }
        guard status.st_mode & S_IFMT == S_IFREG, fd.isMemfd else {
            throw BlobError(.notMemfd, "\(fd) is not a memfd (made with memfd_create)")
        }
        let seals: FileSeals
        do throws(SystemError) {
            seals = try fd.seals()
        } catch {
            throw BlobError(.notSealed, "memfd \(fd.rawValue) cannot be sealed (\(error.errno))")
        }
        guard seals.isSuperset(of: [.shrink, .grow]), !seals.isDisjoint(with: [.write, .futureWrite]) else {
            let missing = FileSeals([.shrink, .grow]).subtracting(seals).names
                + (seals.isDisjoint(with: [.write, .futureWrite]) ? ["F_SEAL_WRITE or F_SEAL_FUTURE_WRITE"] : [])
            throw BlobError(.notSealed, "memfd \(fd.rawValue) lacks \(missing.joined(separator: ", ")) (it has \(seals))")
        }
        let flags: Int32
        do throws(SystemError) { flags = try fd.statusFlags() } catch { throw BlobError(error, "cannot inspect the blob's descriptor") }
        guard flags & O_ACCMODE == O_RDONLY || flags & O_ACCMODE == O_RDWR else {
            throw BlobError(.notReadable, "memfd \(fd.rawValue) was opened write-only")
        }
        // 7, last as the document orders it (a blob that is also not a memfd, or
        // unsealed, is refused for that first, as every receiver does).
        let (end, overflows) = offset.addingReportingOverflow(length)
        guard !overflows else { throw BlobError(.outOfBounds, "offset \(offset) + length \(length) overflows") }
        guard end <= UInt64(max(0, status.st_size)) else {
            throw BlobError(.outOfBounds, "\(length) bytes at \(offset) end past the memfd's \(Int(status.st_size)) bytes")
        }
        return seals.contains(.write)
    }
}
