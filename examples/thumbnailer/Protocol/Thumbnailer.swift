import DBus

/// What the thumbnailer's XML cannot say: where the service is, and its own error.
extension Thumbnailer1 {
    /// The bus name the service owns.
    public static let busName = "org.shmbus.examples.Thumbnailer1"
    /// The path of its object.
    public static let path: ObjectPath = "/org/shmbus/examples/Thumbnailer1"
    /// The error for an image the service cannot scale (another pixel format, no image
    /// attributes, max_side 0).
    public static let unsupportedErrorName = "org.shmbus.examples.Thumbnailer1.Error.Unsupported"

    public static func unsupported(_ message: String) -> DBusError {
        DBusError(name: unsupportedErrorName, message: message)
    }
}
