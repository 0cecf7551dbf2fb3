import DBus

/// One segment the keeper holds, as `Keeper1.Hand` returns it (`(ha{sv})`): a
/// read-only descriptor and the registry's record of it.
public struct KeptSegment: DBusCodable, Sendable {
    public var fd: UnixFileDescriptor
    public var record: Keeper1.Record

    public init(fd: UnixFileDescriptor, record: Keeper1.Record) {
        self.fd = fd
        self.record = record
    }

    public static var dbusType: DBusType { .structure([UnixFileDescriptor.dbusType, Keeper1.Record.dbusType]) }

    public var dbusValue: DBusValue { .structure([fd.dbusValue, record.dbusValue]) }

    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let f) = dbusValue, f.count == 2 else { throw Self.typeMismatch(dbusValue) }
        self.init(fd: try UnixFileDescriptor(dbusValue: f[0]), record: try Keeper1.Record(dbusValue: f[1]))
    }
}
