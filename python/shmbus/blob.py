"""Blobs (docs/BLOBS.md): a payload of any size in any D-Bus call, for dbus-python
callers and services.

A blob is the D-Bus struct ``(a{sv}ayahtt)``: FORMAT.md's attributes, the payload
inline when small, else one sealed memfd with an offset and a length. The sender
decides the form by the payload's length against a threshold (32 KiB by default, the
measured crossing in docs/BENCHMARKS.md, "Blob calls"); the receiver accepts either
at any size, after the document's seven checks, and refuses anything else with
:class:`InvalidBlob` (``org.shmbus.Error.InvalidBlob`` on the bus).

    blob = Blob.from_bytes(data, attributes={"content-type": "image/png"})
    reply = proxy.Thumbnail(blob.to_dbus(), dbus.UInt32(256))
    with Blob.from_dbus(reply).view() as pixels:      # a memoryview, no copy
        ...

In a dbus-python service, take a blob argument with :meth:`Blob.argument`, which
raises a ``DBusException`` named ``org.shmbus.Error.InvalidBlob`` for a bad one, and
return ``blob.to_dbus()``.

Every memfd made here is sealed (``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
F_SEAL_SEAL``) before the :class:`Blob` exists, so nothing unsealed leaves the process.
"""
import errno
import fcntl
import mmap
import os
import stat

from . import attributes as A
from . import format as F
from .errors import ShmBusError

__all__ = ["Blob", "BlobView", "InvalidBlob", "SIGNATURE", "DEFAULT_THRESHOLD", "INLINE_LIMIT", "INVALID_BLOB"]

#: The blob's D-Bus type, as introspection shows it.
SIGNATURE = "(a{sv}ayahtt)"
#: Payloads of fewer bytes go inline (docs/BLOBS.md, "The threshold").
DEFAULT_THRESHOLD = 32 << 10
#: The largest payload D-Bus carries inline: one array holds at most 2**26 bytes.
INLINE_LIMIT = 1 << 26
#: The error name of a refused blob.
INVALID_BLOB = "org.shmbus.Error.InvalidBlob"
#: The seals a sender puts on its memfd.
SEALS = F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_WRITE | F.F_SEAL_SEAL
#: The reasons of docs/BLOBS.md, "Errors", in the order the checks make them.
REASONS = ("form", "attributes", "not-memfd", "not-sealed", "not-readable", "out-of-bounds")


class InvalidBlob(ShmBusError, ValueError):
    """A received blob breaks docs/BLOBS.md; ``reason`` is the document's name for the
    first check it failed. ``str()`` is the message the bus carries: "reason: what"."""

    _dbus_error_name = INVALID_BLOB

    def __init__(self, reason, message):
        super().__init__("%s: %s" % (reason, message))
        self.reason = reason

    def dbus_exception(self):
        """This refusal as a dbus-python ``DBusException`` for a service to raise."""
        import dbus
        return dbus.exceptions.DBusException(str(self), name=INVALID_BLOB)


def _threshold(threshold):
    return min(INLINE_LIMIT, threshold)


def _new_memfd(size):
    fd = os.memfd_create("shmbus-blob", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _seal(fd):
    # F_SEAL_WRITE fails with EBUSY while any writable mapping exists: the kernel's
    # proof that nobody, this process included, can change the bytes any more.
    fcntl.fcntl(fd, F.F_ADD_SEALS, SEALS)


def _dbus_attributes(attributes):
    """A checked Attributes (or mapping) as the blob's a{sv}, in order."""
    import dbus
    entries = []
    for name, value in attributes.items():
        if isinstance(value, str):
            v = dbus.String(value, variant_level=1)
        elif isinstance(value, (tuple, list)):
            v = dbus.Array([dbus.Int64(i) for i in value], signature="x", variant_level=1)
        elif isinstance(value, float):
            v = dbus.Double(value, variant_level=1)
        else:
            v = dbus.Int64(value, variant_level=1)
        entries.append((dbus.String(name), v))
    return dbus.Dictionary(entries, signature="sv")


def _checked_attributes(attributes, length):
    if not attributes:
        return A.EMPTY
    try:
        return A.parse(A.encode(attributes, length), length)
    except A.Problem as problem:
        raise InvalidBlob("attributes", problem.message) from None


def _received_attributes(value, length):
    """The a{sv} of a received blob, by docs/BLOBS.md's "Attributes": s, x, ax, d are
    FORMAT.md's types; other types are skipped, but their names still count, and a
    well-known name with one is refused."""
    import dbus
    if not isinstance(value, dict):
        raise InvalidBlob("form", "the attributes are not an a{sv}")
    entries, seen = {}, set()
    for name, item in value.items():
        name = str(name)
        if name in seen:
            raise InvalidBlob("attributes", "attribute %r appears twice" % name[:64])
        seen.add(name)
        if isinstance(item, dbus.String):
            entries[name] = str(item)
        elif isinstance(item, dbus.Int64):
            entries[name] = int(item)
        elif isinstance(item, dbus.Double):
            entries[name] = float(item)
        elif isinstance(item, dbus.Array) and item.signature == "x":
            entries[name] = tuple(int(i) for i in item)
        elif name in A.WELL_KNOWN:
            raise InvalidBlob("attributes", "%r is a %s, not its row's type" % (name, type(item).__name__))
    return _checked_attributes(entries, length)


class Blob:
    """One blob: inline bytes, or ``length`` bytes at ``offset`` of a sealed memfd
    (``fd``, owned by this object: :meth:`close` it, or use ``with``)."""

    __slots__ = ("attributes", "inline", "fd", "offset", "length", "immutable")

    def __init__(self, attributes, inline=None, fd=None, offset=0, length=None, immutable=True):
        self.attributes = attributes
        self.inline = inline
        self.fd = fd
        self.offset = offset
        self.length = len(inline) if inline is not None else length
        self.immutable = immutable

    # MARK: making

    @classmethod
    def from_bytes(cls, data, attributes=None, threshold=DEFAULT_THRESHOLD):
        """A blob of `data` (any buffer): inline below `threshold`, else copied into a
        new sealed memfd with ``write(2)``."""
        data = memoryview(data).cast("B")
        checked = _checked_attributes(attributes, len(data))
        if len(data) < _threshold(threshold):
            return cls(checked, inline=bytes(data))
        fd = os.memfd_create("shmbus-blob", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            _seal(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(checked, fd=fd, length=len(data))

    @classmethod
    def writing(cls, length, write, attributes=None, threshold=DEFAULT_THRESHOLD):
        """A blob of `length` bytes that ``write(view)`` fills in place: a writable
        memoryview of a bytearray when inline, else of the memfd's shared mapping, which
        is closed before the memfd is sealed. The view is released when `write` returns;
        a slice of it that `write` keeps holds the mapping open, and then no blob is made
        (BufferError): a writable mapping left behind would make the seal a lie."""
        if length < 0:
            raise InvalidBlob("out-of-bounds", "a blob's length cannot be %d" % length)
        checked = _checked_attributes(attributes, length)
        if length < _threshold(threshold):
            buffer = bytearray(length)
            with memoryview(buffer) as view:
                write(view)
            return cls(checked, inline=bytes(buffer))
        fd = _new_memfd(length)
        try:
            mapping = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                with memoryview(mapping) as view:
                    write(view)
            finally:
                mapping.close()        # BufferError if `write` kept a view: no blob then
            _seal(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(checked, fd=fd, length=length)

    @classmethod
    def from_file(cls, path, offset=0, length=None, attributes=None, threshold=DEFAULT_THRESHOLD):
        """A blob of the file's bytes from `offset` (all of them, or `length`): read
        inline below `threshold`, else copied into the memfd by the kernel with
        ``copy_file_range(2)`` (``sendfile(2)`` where the file systems do not allow it),
        never through this process's memory."""
        source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(source).st_size
            if length is None:
                length = max(0, size - offset)
            if offset < 0 or offset + length > size:
                raise InvalidBlob("out-of-bounds", "%d bytes at %d pass the end of %s (%d bytes)" % (length, offset, path, size))
            if length < _threshold(threshold):
                return cls.from_bytes(os.pread(source, length, offset), attributes, threshold)
            checked = _checked_attributes(attributes, length)
            fd = _new_memfd(length)
            try:
                _copy_in_kernel(source, offset, fd, length)
                _seal(fd)
            except BaseException:
                os.close(fd)
                raise
            return cls(checked, fd=fd, length=length)
        finally:
            os.close(source)

    # MARK: the bus

    def to_dbus(self):
        """The blob as a dbus-python value of type ``(a{sv}ayahtt)``. The descriptor is
        duplicated into the message by dbus-python; this blob keeps its own."""
        import dbus
        attributes = _dbus_attributes(self.attributes)
        if self.fd is None:
            return dbus.Struct((attributes, dbus.ByteArray(self.inline), dbus.Array([], signature="h"), dbus.UInt64(0),
                                dbus.UInt64(len(self.inline))), signature="a{sv}ayahtt")
        return dbus.Struct((attributes, dbus.ByteArray(b""), dbus.Array([dbus.types.UnixFd(self.fd)], signature="h"),
                            dbus.UInt64(self.offset), dbus.UInt64(self.length)), signature="a{sv}ayahtt")

    @classmethod
    def from_dbus(cls, value):
        """A received blob, checked as docs/BLOBS.md says ("What the receiver checks",
        in its order); raises :class:`InvalidBlob` with the first failed check's reason.
        The blob owns the descriptor (taken from dbus-python's ``UnixFd``)."""
        import dbus
        if not isinstance(value, (tuple, list)) or len(value) != 5:
            raise InvalidBlob("form", "not a %s struct" % SIGNATURE)
        entries, inline, fds, offset, length = value
        if not isinstance(fds, (list, tuple)) or not all(isinstance(f, dbus.types.UnixFd) for f in fds):
            raise InvalidBlob("form", "the descriptors are not an ah")
        if not isinstance(offset, int) or not isinstance(length, int):
            raise InvalidBlob("form", "offset and length are not t")
        inline = bytes(inline) if isinstance(inline, (bytes, bytearray)) else bytes(int(b) for b in inline)
        # 1. The form.
        if len(fds) > 1:
            raise InvalidBlob("form", "%d descriptors; a blob has none or one" % len(fds))
        if not fds:
            if offset != 0 or length != len(inline):
                raise InvalidBlob("form", "an inline blob of %d bytes says offset %d, length %d" % (len(inline), offset, length))
            return cls(_received_attributes(entries, length), inline=inline)
        if inline or length < 1:
            raise InvalidBlob("form", "a memfd blob carries %d inline bytes and length %d; it needs none and >= 1"
                              % (len(inline), length))
        # 2. The attributes, before the descriptor is taken (the message keeps it).
        checked = _received_attributes(entries, length)
        fd = fds[0].take()
        try:
            immutable = _check_memfd(fd, offset, length)
        except BaseException:
            os.close(fd)
            raise
        return cls(checked, fd=fd, offset=offset, length=length, immutable=immutable)

    @classmethod
    def argument(cls, value):
        """:meth:`from_dbus` for a dbus-python service method: a bad blob raises the
        ``DBusException`` ``org.shmbus.Error.InvalidBlob``, which dbus-python sends back."""
        try:
            return cls.from_dbus(value)
        except InvalidBlob as refusal:
            raise refusal.dbus_exception() from None

    # MARK: reading

    @property
    def is_inline(self):
        return self.fd is None

    def view(self):
        """The payload as a read-only memoryview, no copy: a :class:`BlobView` to use
        with ``with`` (it closes the mapping)."""
        return BlobView(self)

    def bytes(self):
        """The payload copied into bytes (a convenience; :meth:`view` copies nothing)."""
        with self.view() as payload:
            return bytes(payload)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.length = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        form = "inline" if self.fd is None else "memfd %d at %d" % (self.fd, self.offset)
        return "Blob(%s, %d bytes, %s)" % (form, self.length, dict(self.attributes))


class BlobView:
    """A blob's payload mapped read-only (``mmap(PROT_READ, MAP_SHARED)`` from the page
    below ``offset``), or its inline bytes; ``with`` gives the memoryview and closes it."""

    def __init__(self, blob):
        self._mapping = None
        if blob.fd is None:
            self._view = memoryview(blob.inline)
            return
        start = blob.offset % mmap.ALLOCATIONGRANULARITY
        self._mapping = mmap.mmap(blob.fd, start + blob.length, mmap.MAP_SHARED, mmap.PROT_READ, offset=blob.offset - start)
        self._view = memoryview(self._mapping)[start:start + blob.length]

    def __enter__(self):
        return self._view

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Releases the view and unmaps; a view still exported raises BufferError."""
        self._view.release()
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None


def _check_memfd(fd, offset, length):
    """Checks 3-7 on a received descriptor; returns whether F_SEAL_WRITE is set."""
    status = os.fstat(fd)
    # 3, 4. A regular file that memfd_create made.
    try:
        target = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        target = ""
    if not stat.S_ISREG(status.st_mode) or not target.startswith("/memfd:"):
        raise InvalidBlob("not-memfd", "descriptor %d is not a memfd (%s)" % (fd, target or "unknown"))
    # 5. Sealed against resizing, and against writing one way or the other.
    try:
        seals = fcntl.fcntl(fd, F.F_GET_SEALS)
    except OSError as error:
        raise InvalidBlob("not-sealed", "memfd %d cannot be sealed (%s)" % (fd, errno.errorcode.get(error.errno, error.errno))) from None
    resize = F.F_SEAL_SHRINK | F.F_SEAL_GROW
    if seals & resize != resize or not seals & (F.F_SEAL_WRITE | F.F_SEAL_FUTURE_WRITE):
        raise InvalidBlob("not-sealed", "memfd %d has seals 0x%x; it needs F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_WRITE "
                          "or F_SEAL_FUTURE_WRITE" % (fd, seals))
    # 6. Readable.
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
        raise InvalidBlob("not-readable", "memfd %d was opened write-only" % fd)
    # 7. In bounds (the size is final: F_SEAL_SHRINK and F_SEAL_GROW).
    if offset + length > status.st_size:
        raise InvalidBlob("out-of-bounds", "%d bytes at %d end past the memfd's %d bytes" % (length, offset, status.st_size))
    return bool(seals & F.F_SEAL_WRITE)


def _copy_in_kernel(source, offset, target, length):
    copied = 0
    use_sendfile = False
    while copied < length:
        if not use_sendfile:
            try:
                n = os.copy_file_range(source, target, length - copied, offset + copied, copied)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                use_sendfile = True
                continue
        else:
            os.lseek(target, copied, os.SEEK_SET)
            n = os.sendfile(target, source, offset + copied, length - copied)
        if n == 0:
            raise InvalidBlob("out-of-bounds", "the file ended %d bytes into the %d asked for" % (copied, length))
        copied += n
