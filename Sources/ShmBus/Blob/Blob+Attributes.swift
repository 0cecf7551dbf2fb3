import DBus
import SharedSegments

/// A blob's attributes are a chunk's (`ChunkAttributes`, docs/FORMAT.md's model); on the
/// bus they are the blob's `a{sv}` in docs/BLOBS.md's form. Unlike `LookupChunk`'s
/// dictionary (``ChunkAttributes/dbusDictionary``, names sorted), a blob keeps the
/// sender's order, and a name sent twice is refused rather than folded.
extension ChunkAttributes {
    /// The attributes as the blob's first field, in order.
    var blobDBusValue: DBusValue {
        .dictionary(
            key: .string, value: .variant,
            entries.map { entry in
                let value: DBusValue =
                    switch entry.value {
                    case .string(let s): .string(s)
                    case .integer(let i): .int64(i)
                    case .integers(let list): .array(.int64, list.map { .int64($0) })
                    case .double(let d): .double(d)
                    }
                return DBusDictEntry(key: .string(entry.name), value: .variant(value))
            })
    }

    /// A received blob's attributes, checked for a payload of `payloadLength` bytes
    /// (docs/BLOBS.md, "Attributes"): FORMAT.md's checks and its block's size, by
    /// encoding them as a block would be. Values of other D-Bus types are skipped, as
    /// FORMAT.md's readers skip entries of types they do not know, and by the same rules:
    /// a name still appears once counting them, and a well-known name must have its
    /// row's type.
    init(blobEntries: [DBusDictEntry], payloadLength: Int) throws(BlobError) {
        self.init()
        var names = Set<String>()
        for entry in blobEntries {
            guard case .string(let name) = entry.key, case .variant(let value) = entry.value else {
                throw BlobError(.form, "attributes must be a{sv}")
            }
            guard names.insert(name).inserted else { throw BlobError(.attributes, "attribute '\(name.prefix(64))' appears twice") }
            let known: Value? =
                switch value {
                case .string(let s): .string(s)
                case .int64(let i): .integer(i)
                case .array(.int64, let values): .integers(values.compactMap { if case .int64(let i) = $0 { i } else { nil } })
                case .double(let d): .double(d)
                default: nil
                }
            guard let known else {
                if Self.wellKnownNames.contains(name) {
                    throw BlobError(.attributes, "'\(name)' is a '\(value.type)', not its row's type")
                }
                continue
            }
            self[name] = known
        }
        do throws(SegmentError) {
            _ = try encodedBlock(payloadLength: UInt64(payloadLength))
        } catch {
            throw BlobError(.attributes, error.message)
        }
    }
}
