"""Blobs (docs/BLOBS.md): a payload of any size in any D-Bus call, for dbus-python
callers and services.

A blob is the D-Bus struct ``(a{sv}ayahtt)``: FORMAT.md's attributes, the payload
inline when small, else one sealed memfd with an offset and a length. The sender
decides the form by the payload's length against a threshold (32 KiB by default, the
measured crossing in docs/BENCHMARKS.md, "Blob calls"); the receiver accepts either
at any size, after the document's seven checks (:mod:`shmbus.blob_checks`), and
refuses anything else with :class:`InvalidBlob` (``org.shmbus.Error.InvalidBlob`` on
the bus).

    blob = Blob.from_bytes(data, attributes={"content-type": "image/png"})
    reply = proxy.Thumbnail(blob.to_dbus(), dbus.UInt32(256), byte_arrays=True)
    with Blob.from_dbus(reply) as thumbnail, thumbnail.view() as pixels:   # no copy
        ...

In a dbus-python service, take a blob argument with :meth:`Blob.argument`, which
raises the ``DBusException`` ``org.shmbus.Error.InvalidBlob`` for a bad one (the
subclasses are in :mod:`shmbus.blob_dbus`), and return ``blob.to_dbus()``.

Every memfd made here is sealed (``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
F_SEAL_SEAL``) before the :class:`Blob` exists, and :meth:`Blob.to_dbus` sends no
memfd without the seals, so nothing unsealed leaves the process.
"""
import errno
import fcntl
import mmap
import os

from . import format as F
from .blob_checks import (InvalidBlob, NotABlob, SIGNATURE, INVALID_BLOB, INVALID_ARGS, REASONS, unpack, checked_attributes,
                          received_attributes, check_memfd, seals_of, sealed_enough)

__all__ = ["Blob", "BlobView", "InvalidBlob", "NotABlob", "SIGNATURE", "DEFAULT_THRESHOLD", "INLINE_LIMIT", "INVALID_BLOB",
           "INVALID_ARGS", "REASONS"]

#: Payloads of fewer bytes go inline (docs/BLOBS.md, "The threshold").
DEFAULT_THRESHOLD = 32 << 10
#: The largest payload D-Bus carries inline: one array holds at most 2**26 bytes.
INLINE_LIMIT = 1 << 26
#: The seals a sender puts on its memfd.
SEALS = F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_WRITE | F.F_SEAL_SEAL


def _goes_inline(length, threshold):
    """The sender's choice: below the threshold (and what one ay holds) inline; an
    empty payload is always inline (a memfd blob has length >= 1)."""
    return length == 0 or length < min(INLINE_LIMIT, threshold)


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
        checked = checked_attributes(attributes, len(data))
        if _goes_inline(len(data), threshold):
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
        checked = checked_attributes(attributes, length)
        if _goes_inline(length, threshold):
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
            if _goes_inline(length, threshold):
                data = os.pread(source, length, offset)
                if len(data) != length:
                    raise InvalidBlob("out-of-bounds", "%s ended %d bytes into the %d asked for" % (path, len(data), length))
                return cls.from_bytes(data, attributes, threshold)
            checked = checked_attributes(attributes, length)
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
        duplicated into the value by dbus-python (``UnixFd``); this blob keeps its own.
        A memfd without the seals a receiver requires never leaves (InvalidBlob): every
        constructor here seals, and this holds for a ``Blob`` put together by hand too."""
        import dbus
        self._require_open()
        attributes = _dbus_attributes(self.attributes)
        if self.fd is None:
            return dbus.Struct((attributes, dbus.ByteArray(self.inline), dbus.Array([], signature="h"), dbus.UInt64(0),
                                dbus.UInt64(len(self.inline))), signature="a{sv}ayahtt")
        seals = seals_of(self.fd)
        if seals is None or not sealed_enough(seals):
            raise InvalidBlob("not-sealed", "memfd %d has seals %s: it would be refused, it is not sent"
                              % (self.fd, "none" if seals is None else "0x%x" % seals))
        return dbus.Struct((attributes, dbus.ByteArray(b""), dbus.Array([dbus.types.UnixFd(self.fd)], signature="h"),
                            dbus.UInt64(self.offset), dbus.UInt64(self.length)), signature="a{sv}ayahtt")

    @classmethod
    def from_dbus(cls, value):
        """A received blob, checked as docs/BLOBS.md says ("What the receiver checks",
        in its order); raises :class:`InvalidBlob` with the first failed check's reason,
        :class:`NotABlob` for a value of another D-Bus type. The blob owns the descriptor
        (taken from dbus-python's ``UnixFd``; a refused one stays with the ``UnixFd``,
        which closes it when the message's values go)."""
        entries, inline, unix_fd, offset, length = unpack(value)         # its type; 1. the form
        checked = received_attributes(entries, length)                    # 2.
        if unix_fd is None:
            return cls(checked, inline=inline)
        fd = unix_fd.take()
        try:
            immutable = check_memfd(fd, offset, length)                   # 3-7.
        except BaseException:
            os.close(fd)
            raise
        return cls(checked, fd=fd, offset=offset, length=length, immutable=immutable)

    @classmethod
    def argument(cls, value):
        """:meth:`from_dbus` for a dbus-python service method: a bad blob raises the
        ``DBusException`` ``org.shmbus.Error.InvalidBlob``, a value of another type
        ``org.freedesktop.DBus.Error.InvalidArgs`` (dbus-python does not check an
        ``in_signature``), which dbus-python sends back instead of running the method."""
        try:
            return cls.from_dbus(value)
        except (InvalidBlob, NotABlob) as refusal:
            raise refusal.dbus_exception() from None

    @property
    def is_inline(self):
        """Whether the payload travels in the struct's ``ay`` (False once closed)."""
        return self.inline is not None

    @property
    def closed(self):
        return self.fd is None and self.inline is None

    def view(self):
        """The payload as a read-only memoryview, no copy: a :class:`BlobView` to use
        with ``with`` (it closes the mapping)."""
        self._require_open()
        return BlobView(self)

    def bytes(self):
        """The payload copied into bytes (a convenience; :meth:`view` copies nothing)."""
        with self.view() as payload:
            return bytes(payload)

    def close(self):
        """Closes the memfd (views already made stay valid until closed) or drops the
        inline bytes; the blob cannot be sent or viewed any more."""
        if self.fd is not None:
            os.close(self.fd)
        self.fd = self.inline = None
        self.length = 0

    def _require_open(self):
        if self.closed:
            raise ValueError("the blob is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        form = "closed" if self.fd is None and self.inline is None else \
            "inline" if self.fd is None else "memfd %d at %d" % (self.fd, self.offset)
        return "Blob(%s, %d bytes, %s)" % (form, self.length, dict(self.attributes))


class BlobView:
    """A blob's payload mapped read-only (``mmap(PROT_READ, MAP_SHARED)`` from the page
    below ``offset``, as docs/BLOBS.md, "Reading without a copy"), or its inline bytes;
    ``with`` gives the memoryview and unmaps when it ends."""

    def __init__(self, blob):
        self._mapping = self._whole = None
        if blob.fd is None:
            self._view = memoryview(blob.inline)
            return
        start = blob.offset % mmap.PAGESIZE
        self._mapping = mmap.mmap(blob.fd, start + blob.length, mmap.MAP_SHARED, mmap.PROT_READ, offset=blob.offset - start)
        self._whole = memoryview(self._mapping)
        self._view = self._whole[start:start + blob.length]

    def __enter__(self):
        return self._view

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Releases the view and unmaps; a slice of it still held raises BufferError
        (the mapping stays then, and a later close may try again)."""
        self._view.release()
        if self._mapping is not None:
            self._whole.release()
            self._mapping.close()
            self._mapping = None


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
