"""The receiver's side of docs/BLOBS.md: what a received ``(a{sv}ayahtt)`` must be before
anyone uses it ("What the receiver checks", checks 1-7 in the document's order), and the
errors that say why not. :meth:`shmbus.blob.Blob.from_dbus` runs them; nothing here
maps or reads a page of the memfd.

dbus-python does not check a method's ``in_signature`` against the message, so a
service's blob argument may be anything a caller sent: the value's D-Bus type is
checked first (:class:`NotABlob`, ``org.freedesktop.DBus.Error.InvalidArgs`` on the
bus, as Swift's decoder says), then the convention (:class:`InvalidBlob`).
"""
import errno
import fcntl
import os
import stat

from . import attributes as A
from . import format as F
from .errors import ShmBusError

#: The blob's D-Bus type, as introspection shows it.
SIGNATURE = "(a{sv}ayahtt)"
#: The error name of a refused blob.
INVALID_BLOB = "org.shmbus.Error.InvalidBlob"
#: The error name of a value that is not a blob at all (another D-Bus type).
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
#: The reasons of docs/BLOBS.md, "Errors", in the order the checks make them.
REASONS = ("form", "attributes", "not-memfd", "not-sealed", "not-readable", "out-of-bounds")


class InvalidBlob(ShmBusError, ValueError):
    """A blob breaks docs/BLOBS.md (a received one; or one this process was asked to
    make or send that would be refused); ``reason`` is the document's name for the
    first check it failed. ``str()`` is the message the bus carries: "reason: what"."""

    def __init__(self, reason, message):
        super().__init__("%s: %s" % (reason, message))
        self.reason = reason

    @classmethod
    def from_dbus_error(cls, exception):
        """The ``InvalidBlob`` a peer replied (a dbus-python ``DBusException`` named
        ``org.shmbus.Error.InvalidBlob``), or None for any other error: what a caller
        sees when the service refused the caller's blob."""
        name = getattr(exception, "get_dbus_name", lambda: None)()
        if name != INVALID_BLOB:
            return None
        reason, _, what = (exception.get_dbus_message() or "").partition(": ")
        return cls(reason, what)

    def dbus_exception(self):
        """This refusal as the ``DBusException`` a dbus-python service raises."""
        from .blob_dbus import InvalidBlobException
        return InvalidBlobException(self)


class NotABlob(ShmBusError, TypeError):
    """A value that is not of the D-Bus type ``(a{sv}ayahtt)`` at all."""

    def dbus_exception(self):
        from .blob_dbus import InvalidArgsException
        return InvalidArgsException(str(self))


def unpack(value):
    """The five fields of a received blob, its type checked, then check 1 (the form).
    Returns (entries, inline bytes, the UnixFd or None, offset, length)."""
    import dbus
    try:
        signature = dbus.lowlevel.Message.guess_signature(value)
    except (TypeError, ValueError) as error:
        raise NotABlob("expected a blob '%s', got a %s (%s)" % (SIGNATURE, type(value).__name__, error)) from None
    # A blob inside a variant guesses as 'v': only the struct itself is a blob.
    if signature != SIGNATURE:
        raise NotABlob("expected a blob '%s', got '%s'" % (SIGNATURE, signature))
    entries, inline, fds, offset, length = value
    # bytes when the call or the method said byte_arrays=True, else a list of dbus.Byte.
    inline = inline if isinstance(inline, bytes) else bytes(inline)
    # 1. The form.
    if len(fds) > 1:
        raise InvalidBlob("form", "%d descriptors; a blob has none or one" % len(fds))
    if not fds:
        if offset != 0 or length != len(inline):
            raise InvalidBlob("form", "an inline blob of %d bytes says offset %d, length %d" % (len(inline), offset, length))
        return entries, inline, None, 0, length
    if inline or length < 1:
        raise InvalidBlob("form", "a memfd blob carries %d inline bytes and length %d; it needs none and >= 1"
                          % (len(inline), length))
    return entries, b"", fds[0], int(offset), int(length)


def checked_attributes(attributes, length):
    """`attributes` (a mapping) as FORMAT.md checks them for a payload of `length`
    bytes, by encoding them as a chunk's block would be; an ``Attributes``."""
    if not attributes:
        return A.EMPTY
    try:
        return A.parse(A.encode(attributes, length), length)
    except A.Problem as problem:
        raise InvalidBlob("attributes", problem.message) from None


def received_attributes(entries, length):
    """Check 2, on the a{sv} of a received blob (docs/BLOBS.md, "Attributes"): s, x,
    ax, d are FORMAT.md's types; a variant of any other type is skipped (as FORMAT.md's
    readers skip unknown entry types), unless its name is a well-known one.

    dbus-python hands a{sv} over as a dict, so a name the sender repeated has already
    been folded into its last value before this runs: a Python receiver cannot refuse
    a repeated name (docs/BLOBS.md, "What ShmBus provides")."""
    import dbus
    known = {}
    for name, item in entries.items():
        name = str(name)
        # A variant holding a variant arrives as the inner value with variant_level 2:
        # of type v, not FORMAT.md's, as Swift's receiver sees it. (A value built here
        # has level 0 or 1; dbus-python wraps it in the one variant a{sv} asks for.)
        nested = getattr(item, "variant_level", 0) > 1
        if not nested and isinstance(item, dbus.String):
            known[name] = str(item)
        elif not nested and isinstance(item, dbus.Int64):
            known[name] = int(item)
        elif not nested and isinstance(item, dbus.Double):
            known[name] = float(item)
        elif not nested and isinstance(item, dbus.Array) and item.signature == "x":
            known[name] = tuple(int(i) for i in item)
        elif name in A.WELL_KNOWN:
            kind = "variant" if nested else type(item).__name__
            raise InvalidBlob("attributes", "%r is a %s, not its row's type" % (name, kind))
    return checked_attributes(known, length)


def check_memfd(fd, offset, length):
    """Checks 3-7 on a received descriptor (a handful of system calls, no page
    touched); returns whether F_SEAL_WRITE is set (the bytes cannot change)."""
    status = os.fstat(fd)
    # 3, 4. A regular file that memfd_create made.
    try:
        target = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        target = ""
    if not stat.S_ISREG(status.st_mode) or not target.startswith("/memfd:"):
        raise InvalidBlob("not-memfd", "descriptor %d is not a memfd (%s)" % (fd, target or "unknown"))
    # 5. Sealed against resizing, and against writing one way or the other: without
    # F_SEAL_SHRINK a truncation by the sender would turn reads into SIGBUS.
    seals = seals_of(fd)
    if seals is None:
        raise InvalidBlob("not-sealed", "memfd %d cannot be sealed" % fd)
    if not sealed_enough(seals):
        raise InvalidBlob("not-sealed", "memfd %d has seals 0x%x; it needs F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_WRITE "
                          "or F_SEAL_FUTURE_WRITE" % (fd, seals))
    # 6. Readable.
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
        raise InvalidBlob("not-readable", "memfd %d was opened write-only" % fd)
    # 7. In bounds: checked once, the size is final (F_SEAL_SHRINK and F_SEAL_GROW).
    if offset + length > status.st_size:
        raise InvalidBlob("out-of-bounds", "%d bytes at %d end past the memfd's %d bytes" % (length, offset, status.st_size))
    return bool(seals & F.F_SEAL_WRITE)


def seals_of(fd):
    """``F_GET_SEALS`` of `fd`, or None for a file that cannot be sealed (EINVAL)."""
    try:
        return fcntl.fcntl(fd, F.F_GET_SEALS)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        return None


def sealed_enough(seals):
    """Whether `seals` make a memfd safe to map for another process (check 5)."""
    resize = F.F_SEAL_SHRINK | F.F_SEAL_GROW
    return seals & resize == resize and bool(seals & (F.F_SEAL_WRITE | F.F_SEAL_FUTURE_WRITE))
