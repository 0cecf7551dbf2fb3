/// The one-byte type codes of the D-Bus wire format.
///
/// libdbus defines these as `DBUS_TYPE_*` character-constant macros, which do not
/// import into Swift; the values come from the D-Bus specification's "Type system".
public enum DBusTypeCode: UInt8, Sendable, CaseIterable {
    case byte = 0x79           // 'y'
    case boolean = 0x62        // 'b'
    case int16 = 0x6E          // 'n'
    case uint16 = 0x71         // 'q'
    case int32 = 0x69          // 'i'
    case uint32 = 0x75         // 'u'
    case int64 = 0x78          // 'x'
    case uint64 = 0x74         // 't'
    case double = 0x64         // 'd'
    case string = 0x73         // 's'
    case objectPath = 0x6F     // 'o'
    case signature = 0x67      // 'g'
    case unixFD = 0x68         // 'h'
    case array = 0x61          // 'a'
    case variant = 0x76        // 'v'
    case structBegin = 0x28    // '('
    case structEnd = 0x29      // ')'
    case dictEntryBegin = 0x7B // '{'
    case dictEntryEnd = 0x7D   // '}'
    // libdbus reports these two codes for containers while iterating.
    case `struct` = 0x72       // 'r'
    case dictEntry = 0x65      // 'e'

    /// The code as libdbus's C API takes it (an `int`).
    var cValue: Int32 { Int32(rawValue) }
}
