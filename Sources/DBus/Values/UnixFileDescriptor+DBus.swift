import ShmBusSystem

/// The descriptor type of a D-Bus `h` value: ShmBusSystem's owned descriptor, named
/// here so that `import DBus` is enough to send and receive descriptors.
public typealias UnixFileDescriptor = ShmBusSystem.UnixFileDescriptor
