import DBus
import SharedSegments

/// A chunk's attributes on the bus (`LookupChunk`'s `attributes`): an `a{sv}` whose
/// values are `s`, `x`, `ax` or `d`, as docs/FORMAT.md's type table maps the block's
/// entry types. Dictionaries have no order, so the block's order is not kept: names
/// come back sorted.
extension ChunkAttributes {
    /// The attributes as `a{sv}`.
    public var dbusDictionary: [String: DBusVariant] {
        var out: [String: DBusVariant] = [:]
        for (name, value) in entries {
            switch value {
            case .string(let s): out[name] = DBusVariant(s)
            case .integer(let i): out[name] = DBusVariant(i)
            case .integers(let list): out[name] = DBusVariant(list)
            case .double(let d): out[name] = DBusVariant(d)
            }
        }
        return out
    }

    /// Attributes from an `a{sv}` another process sent. A value of another D-Bus type
    /// is skipped, as a reader skips a block entry of a type it does not know; the rest
    /// must pass docs/FORMAT.md's checks for a payload of `payloadLength` bytes
    /// (`invalidArgument` naming the rule otherwise).
    public init(dbusDictionary: [String: DBusVariant], payloadLength: UInt64) throws(ShmBusError) {
        self.init()
        for name in dbusDictionary.keys.sorted() {
            switch dbusDictionary[name]!.value {
            case .string(let s): self[name] = .string(s)
            case .int64(let i): self[name] = .integer(i)
            case .array(.int64, let values):
                self[name] = .integers(values.compactMap { if case .int64(let i) = $0 { i } else { nil } })
            case .double(let d): self[name] = .double(d)
            default: continue
            }
        }
        do {
            try validate(payloadLength: payloadLength)
        } catch {
            throw .invalidArgument(error.message)
        }
    }
}
