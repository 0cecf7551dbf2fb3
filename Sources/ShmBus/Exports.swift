// What `import ShmBus` brings besides its own types: the contract (errors, the
// registry's structs, the generated interfaces), the types a reader holds (chunks,
// where a subscription starts, segment identities), the garbage-collection policy a
// publisher is configured with, the read policy it grants, and the connection type the
// `on:` parameters take.
// Writers and readers of raw segments (`ChannelWriter`, `SegmentReader`) stay in
// SharedSegments: they are for tools that work without the bus.

@_exported import ShmBusProtocol
@_exported import struct SharedSegments.Chunk
@_exported import struct SharedSegments.ChunkAttributes
@_exported import struct SharedSegments.SegmentID
@_exported import struct SharedSegments.SegmentError
@_exported import struct SharedSegments.GarbageCollectionPolicy
@_exported import struct ShmBusPolicy.ReadPolicy
@_exported import class SharedSegments.ChannelCursor
@_exported import class DBus.DBusConnection
@_exported import struct DBus.DBusError
@_exported import class DBus.UnixFileDescriptor
@_exported import struct DBus.ObjectPath
