"""Reads one ShmBus segment: docs/FORMAT.md, version 1, validated as its "Validation"
section says. Standard library only (os, fcntl, mmap, struct).

A segment is given as a file descriptor (borrowed: duplicated, the caller keeps its
own) or a path opened read-only (such as /proc/PID/fd/N). The reader checks the seals,
maps it PROT_READ / MAP_SHARED, validates the header, and validates every record as it
reaches it. Each shared field is read once into a local copy and only the copy is
checked and used, since the writer can still change its own segment.

A record's attributes block (FORMAT.md, "Attributes") is copied and checked with the
record (:mod:`shmbus.attributes`); one that fails makes the record a BadAttributes.

Payloads are ``memoryview`` slices of the mapping: nothing is copied, and
``numpy.frombuffer(chunk.payload, ...)`` copies nothing either. A view keeps the
mapping alive; closing the segment while views are in use leaves it mapped until they
are released.

Nothing here can crash the interpreter: the seals forbid shrinking the file, so no
read past the mapping's end faults, and every offset is checked against the size
first. (With ``require_seals=False``, for copies you own, a file truncated under the
reader would raise SIGBUS: do not use it on files others can change.)
"""
import mmap
import os
import struct
import time
import fcntl

from . import attributes as A
from . import format as F
from .errors import SegmentError, NotSealed, BadHeader, UnsupportedVersion, BadRecord, BadAttributes

__all__ = ["Segment", "Chunk", "Record", "LiveState", "newest_chunk", "check_memfd", "now_ns"]


def now_ns():
    """CLOCK_REALTIME in nanoseconds: the clock of `timestamp` and `expiry`."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def check_memfd(fd, required, what="descriptor"):
    """Raises NotSealed unless `fd` is a memfd carrying every seal in `required`
    (FORMAT.md, "Seals"); other seals may be set too. Returns the seals."""
    try:
        target = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        target = ""
    if not target.startswith("/memfd:"):
        raise NotSealed("%s is not a memfd (%s)" % (what, target or "unknown"))
    try:
        seals = fcntl.fcntl(fd, F.F_GET_SEALS)
    except OSError:
        raise NotSealed("%s does not support sealing" % what) from None
    if seals & required != required:
        raise NotSealed("%s has seals 0x%x; 0x%x are required" % (what, seals, required))
    return seals


class LiveState:
    """The mutable header fields at one instant (FORMAT.md, "Header")."""

    __slots__ = ("committed_end", "last_sequence", "record_count", "live_bytes", "dead_bytes",
                 "live_chunks", "retired", "successor")

    def __init__(self, committed_end, last_sequence, record_count, live_bytes, dead_bytes,
                 live_chunks, retired, successor):
        self.committed_end = committed_end
        self.last_sequence = last_sequence
        self.record_count = record_count
        self.live_bytes = live_bytes
        self.dead_bytes = dead_bytes
        self.live_chunks = live_chunks
        self.retired = retired
        self.successor = successor      # the successor's name (hex), once retired

    def __repr__(self):
        return ("LiveState(committed_end=%d, last_sequence=%d, retired=%s, successor=%r)"
                % (self.committed_end, self.last_sequence, self.retired, self.successor))


class Chunk:
    """One validated record. ``payload`` is a zero-copy, read-only memoryview into the
    mapping; ``bytes(chunk.payload)`` copies. ``segment`` is the Segment it lives in
    (its ``name``, ``generation`` and ``channel`` say where). ``attributes`` is a
    read-only ordered mapping (:class:`shmbus.attributes.Attributes`), empty when the
    chunk has none; :meth:`array` views the payload as the numpy array they describe."""

    __slots__ = ("segment", "offset", "length", "sequence", "timestamp", "expiry", "key", "payload",
                 "payload_offset", "attributes")

    def __init__(self, segment, offset, length, sequence, timestamp, expiry, key, payload, payload_offset,
                 attributes=A.EMPTY):
        self.attributes = attributes
        self.segment = segment
        self.payload_offset = payload_offset   # where the payload starts in the segment: Lookup's offset
        self.offset = offset            # the record's offset in the segment
        self.length = length            # the whole record, padding included
        self.sequence = sequence
        self.timestamp = timestamp
        self.expiry = expiry
        self.key = key
        self.payload = payload

    @property
    def end(self):
        """The offset of the next record."""
        return self.offset + self.length

    @property
    def flags(self):
        """The flags word now (the only record field that changes after commit)."""
        return struct.unpack_from("<I", self.segment._map, self.offset + F.RECORD_FLAGS_OFFSET)[0]

    @property
    def obsolete(self):
        return bool(self.flags & F.OBSOLETE)          # other bits: ignored

    def expired(self, now=None):
        now = now_ns() if now is None else now
        return self.expiry != 0 and now >= self.expiry

    def live(self, now=None):
        return not self.obsolete and not self.expired(now)

    @property
    def content_type(self):
        """The ``content-type`` attribute, or None."""
        return self.attributes.content_type

    @property
    def array_layout(self):
        """The array the attributes describe (dtype, shape, strides...), or None."""
        return self.attributes.array

    @property
    def image_layout(self):
        """The image the attributes describe (width, height, stride, pixel format...), or None."""
        return self.attributes.image

    def array(self):
        """A read-only numpy array over the payload, no copy: dtype, shape and strides
        from the array attributes, else (h, w[, channels]) from the image's packed
        pixel format. :class:`~shmbus.errors.NotAnArray` when neither is usable."""
        from .arrays import to_array
        return to_array(self)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export of :meth:`array` (CPU memory), so that ``numpy.from_dlpack(chunk)``
        (and torch's, jax's...) view the payload without a copy. The array is read-only,
        which only DLPack 1.0 can say: a consumer asking for the older unversioned form
        gets numpy's BufferError rather than a writable alias of shared memory."""
        options = {name: value for name, value in (("max_version", max_version), ("dl_device", dl_device),
                                                   ("copy", copy)) if value is not None}
        return self.array().__dlpack__(stream=stream, **options)

    def __dlpack_device__(self):
        return (1, 0)          # kDLCPU, device 0: a mapping in this process

    def __len__(self):
        return len(self.payload)

    def __bytes__(self):
        return bytes(self.payload)

    def __repr__(self):
        return "Chunk(sequence=%d, key=%r, length=%d, segment=%s)" % (
            self.sequence, self.key, len(self.payload), self.segment.name)


Record = Chunk      # the name examples/python/shmbus_segment.py used


class Segment:
    """A segment mapped read-only, its header validated (FORMAT.md, "Validation").

    `source` is a file descriptor (borrowed: duplicated, the caller keeps its own) or
    a path opened O_RDONLY (such as /proc/PID/fd/N). ``require_seals=False`` accepts
    files that are not sealed memfds (copies you own; see the module's documentation).
    """

    def __init__(self, source, require_seals=True):
        if isinstance(source, int):
            try:
                fd = os.dup(source)
            except OSError as error:
                raise SegmentError("cannot use descriptor %d: %s" % (source, error.strerror)) from None
        else:
            try:
                fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise SegmentError("cannot open %s: %s" % (source, error.strerror)) from None
        self._map = None
        try:
            self._open(fd, source, require_seals)
        finally:
            os.close(fd)         # the mapping stays valid without the descriptor

    def _open(self, fd, source, require_seals):
        if require_seals:
            check_memfd(fd, F.REQUIRED_SEALS, str(source))
        size = os.fstat(fd).st_size
        if size < F.MINIMUM_SIZE:
            raise BadHeader("the file is %d bytes; a segment takes at least %d" % (size, F.MINIMUM_SIZE))
        try:
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError) as error:
            raise SegmentError("cannot map %s: %s" % (source, error)) from None
        self._view = memoryview(self._map)
        self.file_size = size
        self._read_header()

    def _read_header(self):
        head = bytes(self._map[0:F.HEADER_CHECKSUM_OFFSET + 8])     # read once, check the copy
        magic, version, header_size, capacity = struct.unpack_from("<QIIQ", head, 0)
        if magic != F.MAGIC:
            raise BadHeader("magic is 0x%x, not 0x%x (\"SHMBUSG1\")" % (magic, F.MAGIC))
        if version != F.VERSION:
            raise UnsupportedVersion("format version %d is not supported (this reader knows %d)" % (version, F.VERSION))
        if header_size != F.HEADER_SIZE:
            raise BadHeader("header size %d is not %d" % (header_size, F.HEADER_SIZE))
        stored = struct.unpack_from("<Q", head, F.HEADER_CHECKSUM_OFFSET)[0]
        computed = F.mix64(head[0:F.HEADER_CHECKSUM_OFFSET], F.HEADER_SEED)
        if stored != computed:
            raise BadHeader("header checksum mismatch (stored 0x%x, computed 0x%x)" % (stored, computed))
        if capacity % F.PAGE or capacity < F.MINIMUM_SIZE or capacity > self.file_size:
            raise BadHeader("capacity %d is not a multiple of %d of at least %d within the file's %d bytes"
                            % (capacity, F.PAGE, F.MINIMUM_SIZE, self.file_size))
        channel_length = struct.unpack_from("<H", head, F.CHANNEL_LENGTH_OFFSET)[0]
        if not 1 <= channel_length <= F.MAX_CHANNEL:
            raise BadHeader("channel name length %d is not in 1-200" % channel_length)
        channel = head[F.CHANNEL_OFFSET:F.CHANNEL_OFFSET + channel_length]
        try:
            channel.decode("utf-8")
        except UnicodeDecodeError:
            raise BadHeader("channel name is not UTF-8") from None
        problem = F.channel_name_problem(channel)
        if problem:
            raise BadHeader("channel name %r: %s" % (channel, problem))
        segment_id = head[F.SEGMENT_ID_OFFSET:F.SEGMENT_ID_OFFSET + 16]
        if segment_id == bytes(16):
            raise BadHeader("segment ID is zero")
        self.capacity = capacity
        self.name = segment_id.hex()
        self.channel = channel.decode("utf-8")
        self.generation, self.base_sequence, self.created = struct.unpack_from("<QQQ", head, F.GENERATION_OFFSET)
        self.writer_pid = struct.unpack_from("<I", head, F.WRITER_PID_OFFSET)[0]

    def live_state(self):
        """The mutable header fields, validated: `state` first, then `committed_end`
        (FORMAT.md, "Garbage collection, retire and successor")."""
        m = self._map
        state = struct.unpack_from("<I", m, F.STATE)[0]
        committed_end = struct.unpack_from("<Q", m, F.COMMITTED_END)[0]
        if committed_end < F.HEADER_SIZE or committed_end > self.capacity or committed_end % 64:
            raise BadHeader("committed end %d is outside [%d, %d] or not a multiple of 64"
                            % (committed_end, F.HEADER_SIZE, self.capacity))
        retired = bool(state & F.RETIRED)                 # other bits: ignored
        successor = None
        if retired:
            successor = bytes(m[F.SUCCESSOR_ID:F.SUCCESSOR_ID + 16]).hex()
            if successor == "00" * 16 or successor == self.name:
                raise BadHeader("retired without a valid successor ID")
        last_sequence, record_count = struct.unpack_from("<QQ", m, F.LAST_SEQUENCE)
        live_bytes, dead_bytes, live_chunks = struct.unpack_from("<QQQ", m, F.LIVE_BYTES)
        return LiveState(committed_end, last_sequence, record_count, live_bytes, dead_bytes,
                         live_chunks, retired, successor)

    def committed_end(self):
        """The commit word alone, validated: the cheap look a waiting reader polls."""
        end = struct.unpack_from("<Q", self._map, F.COMMITTED_END)[0]
        if end < F.HEADER_SIZE or end > self.capacity or end % 64:
            raise BadHeader("committed end %d is outside [%d, %d] or not a multiple of 64"
                            % (end, F.HEADER_SIZE, self.capacity))
        return end

    def is_retired(self):
        return bool(struct.unpack_from("<I", self._map, F.STATE)[0] & F.RETIRED)

    def record(self, offset, limit):
        """The record at `offset`, validated against `limit` (a committed end)."""
        if offset % 64:
            raise BadRecord(offset, "offset is not 64-byte aligned")
        if offset < F.HEADER_SIZE or offset + F.RECORD_HEADER > limit or limit > self.capacity:
            raise BadRecord(offset, "a record header does not fit below the committed end %d" % limit)
        head = bytes(self._map[offset:offset + F.RECORD_HEADER])     # read once, check the copy
        magic, _flags, length, sequence, timestamp, expiry, payload_length, payload_offset, key_length, \
            attributes_length, stored = F.RECORD_STRUCT.unpack(head)
        if magic != F.RECORD_MAGIC:
            raise BadRecord(offset, "magic is 0x%x, not 0x%x (\"CHNK\")" % (magic, F.RECORD_MAGIC))
        if length < F.RECORD_HEADER or length % 64 or length > limit - offset:
            raise BadRecord(offset, "length %d is not a multiple of 64 of at least 64 below the committed end %d"
                            % (length, limit))
        if key_length > F.MAX_KEY:
            raise BadRecord(offset, "key length %d exceeds %d" % (key_length, F.MAX_KEY))
        if payload_offset % 64 or payload_offset < F.RECORD_HEADER + key_length:
            raise BadRecord(offset, "payload offset %d overlaps the header or key, or is not 64-byte aligned"
                            % payload_offset)
        if payload_offset > length or payload_length > length - payload_offset:
            raise BadRecord(offset, "payload (%d bytes at +%d) runs past the record's %d bytes"
                            % (payload_length, payload_offset, length))
        if attributes_length:           # most records have none: keep their path as it was
            problem = A.placement_problem(key_length, attributes_length, payload_offset)
            if problem:
                raise BadAttributes(offset, problem)
        key = bytes(self._map[offset + F.RECORD_HEADER:offset + F.RECORD_HEADER + key_length])
        computed = F.mix64(key, F.mix64(head[0:4] + b"\0\0\0\0" + head[8:56], F.RECORD_SEED))
        if computed != stored:
            raise BadRecord(offset, "checksum mismatch (stored 0x%x, computed 0x%x)" % (stored, computed))
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(offset, "key is not UTF-8") from None
        attributes = A.EMPTY
        if attributes_length:
            at = offset + A.attributes_offset(key_length)
            try:
                attributes = A.parse(self._map[at:at + attributes_length], payload_length)   # a copy, read once
            except A.Problem as fault:
                raise BadAttributes(offset, fault.message, None if fault.where is None else at + fault.where) from None
        start = offset + payload_offset
        return Chunk(self, offset, length, sequence, timestamp, expiry, key,
                     self._view[start:start + payload_length], start, attributes)

    def records(self):
        """Every committed record in file order, obsolete and expired ones included.
        Raises at the first invalid one."""
        limit = self.committed_end()                 # loaded once
        offset = F.HEADER_SIZE
        while offset < limit:
            record = self.record(offset, limit)
            yield record
            offset = record.end

    def chunks(self, now=None):
        """The live chunks (not obsolete, not expired), in file order."""
        for record in self.records():
            if record.live(now):
                yield record

    def latest(self, key, now=None):
        """FORMAT.md, "The newest chunk of a key", step 1: the last record with `key`
        in the file if it is live, else None."""
        last = None
        for record in self.records():
            if record.key == key:
                last = record
        return last if last is not None and last.live(now) else None

    def chunk_at_payload(self, payload_offset, length, now=None):
        """The record whose payload starts at `payload_offset` and is `length` bytes
        long (what Lookup answers), found by walking and validating the records from
        the start: a registry's offsets are believed only when a valid record says the
        same. None when there is no such record or it is no longer live."""
        for record in self.records():
            if record.payload_offset == payload_offset and len(record.payload) == length:
                return record if record.live(now) else None
            if record.offset >= payload_offset:
                break
        return None

    def close(self):
        """Releases the mapping unless payload views still use it (then it goes when
        they are released)."""
        if self._map is None:
            return
        try:
            self._view.release()
            self._map.close()
        except BufferError:
            pass        # payload views still in use keep the mapping

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Segment(%s, channel=%r, generation=%d)" % (self.name, self.channel, self.generation)


def newest_chunk(segments, key, current=None, now=None):
    """FORMAT.md, "The newest chunk of a key", step 2, over segments a caller holds:
    retired ones left out, the current one first (`current`, a name; else none is
    preferred), then by generation, highest first; the first segment that has a live
    chunk of `key` wins. Returns (segment, chunk), or (None, None)."""
    active = [s for s in segments if not s.live_state().retired]
    order = sorted(active, key=lambda s: (s.name == current, s.generation), reverse=True)
    for segment in order:
        found = segment.latest(key, now)
        if found is not None:
            return segment, found
    return None, None
