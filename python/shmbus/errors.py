"""The exceptions of the package, in one place so that callers can catch by kind.

Everything read from shared memory or from the bus is untrusted: whatever is wrong
with it is raised as one of these, with what was wrong and where, never as a crash
or a bare struct.error / IndexError.

    ShmBusError
    ├── SegmentError          a segment (or doorbell) failed validation
    │   ├── NotSealed         not a memfd, or without the required seals
    │   ├── BadHeader         the header or the file size is invalid
    │   │   └── UnsupportedVersion
    │   ├── BadRecord         a record is invalid (``offset`` says where)
    │   │   └── BadAttributes a record's attributes block fails FORMAT.md's "Checks"
    │   └── BadDoorbell       the doorbell descriptor cannot be used
    └── BusError              a D-Bus call failed (``dbus_name`` is the error name)
        ├── NotFound          org.shmbus.Error.NotFound (also a LookupError)
        ├── AccessDenied      org.shmbus.Error.AccessDenied (also a PermissionError)
        ├── InvalidArgument   org.shmbus.Error.InvalidArgument (also a ValueError)
        ├── QuotaExceeded, ChannelBusy, RegistryBadSegment, RegistryNotSealed
        ├── Unavailable       nobody owns the name, or it does not answer in time
        └── BadReply          a reply of the wrong shape or type
    NotAnArray                ``Chunk.array()`` cannot view the payload (also a ValueError)
    InvalidBlob               a blob breaks docs/BLOBS.md (shmbus.blob; also a ValueError)
    NotABlob                  a value that is not of the blob's D-Bus type (shmbus.blob; also a TypeError)
"""


class ShmBusError(Exception):
    """Base of every error this package raises on purpose."""


class SegmentError(ShmBusError):
    """Anything wrong with a segment: what and where."""


class NotSealed(SegmentError):
    """The descriptor is not a memfd carrying the four required seals."""


class BadHeader(SegmentError):
    """The header (or the file's size) is invalid."""


class UnsupportedVersion(BadHeader):
    """The segment has a format version this reader does not know."""


class BadRecord(SegmentError):
    """A record is invalid; ``offset`` says where it starts."""

    def __init__(self, offset, message):
        super().__init__("record at offset %d: %s" % (offset, message))
        self.offset = offset


class BadAttributes(BadRecord):
    """A record's attributes block fails docs/FORMAT.md's "Checks": as bad as a bad
    key, so the record is refused. ``offset`` is the record's, ``where`` the byte in
    the segment where the fault is (the block's start when it is the block's)."""

    def __init__(self, offset, message, where=None):
        super().__init__(offset, "attributes: %s%s" % (message, "" if where is None else " (at byte %d)" % where))
        self.where = where


class NotAnArray(ShmBusError, ValueError):
    """``Chunk.array()`` cannot make a view: no array or image attributes, a dtype or
    pixel format this reader does not know, bfloat16 without ml_dtypes, no numpy."""


class BadDoorbell(SegmentError):
    """The doorbell handed out with a segment is not a sealed memfd of a page at least."""


class BusError(ShmBusError):
    """A D-Bus call failed. ``dbus_name`` is the D-Bus error name (or None)."""

    def __init__(self, message, dbus_name=None):
        super().__init__(message)
        self.dbus_name = dbus_name


class NotFound(BusError, LookupError):
    """No such channel, segment or key (``org.shmbus.Error.NotFound``)."""


class AccessDenied(BusError, PermissionError):
    """The registry or publisher refused this caller (``org.shmbus.Error.AccessDenied``)."""


class InvalidArgument(BusError, ValueError):
    """An argument was refused (``org.shmbus.Error.InvalidArgument``, or checked here first)."""


class QuotaExceeded(BusError):
    """``org.shmbus.Error.QuotaExceeded``."""


class ChannelBusy(BusError):
    """``org.shmbus.Error.ChannelBusy``."""


class RegistryBadSegment(BusError):
    """``org.shmbus.Error.BadSegment``: the registry refused a segment."""


class RegistryNotSealed(BusError):
    """``org.shmbus.Error.NotSealed``: the registry refused an unsealed segment."""


class Unavailable(BusError):
    """Nobody owns the name called (no registry running), or no answer in time."""


class BadReply(BusError):
    """A reply that does not have the contract's shape: wrong arity or types."""


#: org.shmbus.Error.* and a few org.freedesktop.DBus.Error.* names, to the class raised.
BY_DBUS_NAME = {
    "org.shmbus.Error.NotFound": NotFound,
    "org.shmbus.Error.AccessDenied": AccessDenied,
    "org.shmbus.Error.InvalidArgument": InvalidArgument,
    "org.shmbus.Error.NotSealed": RegistryNotSealed,
    "org.shmbus.Error.BadSegment": RegistryBadSegment,
    "org.shmbus.Error.QuotaExceeded": QuotaExceeded,
    "org.shmbus.Error.ChannelBusy": ChannelBusy,
    "org.freedesktop.DBus.Error.ServiceUnknown": Unavailable,
    "org.freedesktop.DBus.Error.NameHasNoOwner": Unavailable,
    "org.freedesktop.DBus.Error.NoReply": Unavailable,
    "org.freedesktop.DBus.Error.Timeout": Unavailable,
    "org.freedesktop.DBus.Error.Disconnected": Unavailable,
    "org.freedesktop.DBus.Error.UnknownObject": NotFound,
    "org.freedesktop.DBus.Error.AccessDenied": AccessDenied,
}
