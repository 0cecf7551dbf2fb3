"""Writes a channel's segments exactly as docs/FORMAT.md says: creates and seals memfd
segments, writes chunks in place past the commit word and commits them, marks a key's
previous chunk obsolete, and collects garbage into the next generation. No bus here
(:mod:`shmbus.publisher` registers what this makes and announces commits).

Python has no atomic stores or fences. The commit word is published after the record
with a plain 8-byte store, preceded by a full barrier made by the kernel
(``FUTEX_WAKE_OP`` on a private word, see :func:`shmbus.doorbell.full_fence`), so a
reader that sees the new commit word sees the whole record; aligned 4- and 8-byte
stores through ``struct.pack_into`` on a mapping are single stores in CPython on
x86-64 and aarch64 (a torn one would show up as a validation error in readers, never
as wrong data passed as valid, since every record carries a checksum).

One writer per channel, one thread at a time.
"""
import mmap
import os
import struct
import fcntl

from . import attributes as A
from . import format as F
from .doorbell import full_fence
from .errors import InvalidArgument, SegmentError
from .segment import Segment, now_ns

__all__ = ["SegmentWriter", "ChannelWriter", "Lineage"]


def _record_layout(key_length, payload_length, attributes_length=0):
    """(payload offset, record length): FORMAT.md, "Records"; with attributes the
    block sits at align8(64 + key length) and the payload after it, 64-aligned."""
    if attributes_length:
        payload_offset = F.align64(A.attributes_offset(key_length) + attributes_length)
    else:
        payload_offset = F.align64(F.RECORD_HEADER + key_length)
    return payload_offset, F.align64(payload_offset + payload_length)


def attributes_block(attributes, payload_length):
    """The encoded block for `attributes` (b"" for none), checked as readers will
    check it, against a payload of `payload_length` bytes: InvalidArgument if not."""
    try:
        return A.encode(attributes, payload_length)
    except A.Problem as problem:
        raise InvalidArgument("invalid attributes: %s" % problem.message) from None


class SegmentWriter:
    """One segment being written: the memfd, sealed, and the writer's own writable
    mapping (the seals forbid any other writable mapping, not this one)."""

    def __init__(self, channel, capacity, generation, base_sequence):
        problem = F.channel_name_problem(channel)
        if problem:
            raise InvalidArgument("invalid channel name %r: %s" % (channel, problem))
        if capacity % F.PAGE or capacity < F.MINIMUM_SIZE:
            raise InvalidArgument("capacity %d is not a multiple of 4096 of at least 8192" % capacity)
        self.channel = channel
        self.capacity = capacity
        self.generation = generation
        self.base_sequence = base_sequence
        self.id = os.urandom(16)
        while self.id == bytes(16):
            self.id = os.urandom(16)
        self.name = self.id.hex()
        self.fd = os.memfd_create("shmbus:" + channel, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, capacity)
            self.map = mmap.mmap(self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            m = self.map
            struct.pack_into("<QIIQ", m, 0, F.MAGIC, F.VERSION, F.HEADER_SIZE, capacity)
            m[F.SEGMENT_ID_OFFSET:F.SEGMENT_ID_OFFSET + 16] = self.id
            name = channel.encode("ascii")
            struct.pack_into("<QQQIH", m, F.GENERATION_OFFSET, generation, base_sequence, now_ns(),
                             os.getpid() & 0xFFFFFFFF, len(name))
            m[F.CHANNEL_OFFSET:F.CHANNEL_OFFSET + len(name)] = name
            struct.pack_into("<Q", m, F.HEADER_CHECKSUM_OFFSET, F.mix64(m[0:F.HEADER_CHECKSUM_OFFSET], F.HEADER_SEED))
            struct.pack_into("<QQ", m, F.COMMITTED_END, F.HEADER_SIZE, base_sequence)
            # Sealed before any other process sees the descriptor.
            fcntl.fcntl(self.fd, F.F_ADD_SEALS, F.REQUIRED_SEALS)
        except BaseException:
            os.close(self.fd)
            raise
        self.end = F.HEADER_SIZE                  # the committed end
        self.last_sequence = base_sequence
        self.record_count = 0
        self.live_bytes = self.dead_bytes = self.live_chunks = 0
        self.retired = False

    @property
    def free(self):
        return self.capacity - self.end

    def write_record(self, sequence, key, payload_length, timestamp, expiry, attributes=b""):
        """Writes a record's header, key and attributes block (encoded, see
        :func:`attributes_block`) past the committed end (not committed); returns
        (record offset, record length, payload offset)."""
        payload_offset, length = _record_layout(len(key), payload_length, len(attributes))
        offset = self.end
        if length > self.capacity - offset:
            raise SegmentError("no room for %d bytes in segment %s" % (length, self.name))
        head = bytearray(F.RECORD_STRUCT.pack(F.RECORD_MAGIC, 0, length, sequence, timestamp, expiry, payload_length,
                                              payload_offset, len(key), len(attributes), 0))
        struct.pack_into("<Q", head, 56, F.mix64(key, F.mix64(bytes(head[:56]), F.RECORD_SEED)))
        m = self.map
        m[offset:offset + 64] = head
        if key:
            m[offset + 64:offset + 64 + len(key)] = key
        # Zero padding: a reused area is never reused here (memfds start zeroed), but
        # copies by collection bring their own bytes, so write it anyway.
        pad_from = offset + 64 + len(key)
        if attributes:
            at = offset + A.attributes_offset(len(key))
            m[pad_from:at] = bytes(at - pad_from)
            m[at:at + len(attributes)] = attributes
            pad_from = at + len(attributes)
        if pad_from < offset + payload_offset:
            m[pad_from:offset + payload_offset] = bytes(offset + payload_offset - pad_from)
        tail = offset + payload_offset + payload_length
        if tail < offset + length:
            m[tail:offset + length] = bytes(offset + length - tail)
        return offset, length, offset + payload_offset

    def commit(self, end, sequence, count, live_bytes):
        """FORMAT.md, "Commit": everything below `end` written, then (after a full
        barrier) the commit word, then the last sequence, then the statistics."""
        full_fence()
        m = self.map
        struct.pack_into("<Q", m, F.COMMITTED_END, end)
        struct.pack_into("<Q", m, F.LAST_SEQUENCE, sequence)
        self.end = end
        self.last_sequence = sequence
        self.record_count += count
        self.live_bytes += live_bytes
        self.live_chunks += count
        self._store_statistics()

    def _store_statistics(self):
        struct.pack_into("<Q", self.map, F.RECORD_COUNT, self.record_count)
        struct.pack_into("<QQQ", self.map, F.LIVE_BYTES, self.live_bytes, self.dead_bytes, self.live_chunks)

    def mark_obsolete(self, offset, length):
        """Sets bit 0 of a committed record's flags (only this writer writes them)."""
        flags = struct.unpack_from("<I", self.map, offset + F.RECORD_FLAGS_OFFSET)[0]
        if flags & F.OBSOLETE:
            return
        struct.pack_into("<I", self.map, offset + F.RECORD_FLAGS_OFFSET, flags | F.OBSOLETE)
        self.live_bytes -= length
        self.dead_bytes += length
        self.live_chunks -= 1
        self._store_statistics()

    def retire(self, successor):
        """The successor's ID first, then (after a barrier) the retired bit."""
        if self.retired:
            return
        self.map[F.SUCCESSOR_ID:F.SUCCESSOR_ID + 16] = successor.id
        full_fence()
        struct.pack_into("<I", self.map, F.STATE, F.RETIRED)
        self.retired = True

    def reader(self):
        """This segment read back through the validating reader."""
        return Segment(self.fd)

    def close(self):
        try:
            self.map.close()
        except (BufferError, ValueError):
            pass            # payload views still in use keep the mapping
        try:
            os.close(self.fd)
        except OSError:
            pass


class Lineage:
    """A channel's history as a new writer takes it over (FORMAT.md, "Generations and
    sequences", across publishers): from the segments a departed writer left, read
    with the validating reader, the highest generation, the last sequence any header
    or valid record used, and the chunks to carry over (the newest live one of each
    key, every live one without a key), in sequence order. Keys in `excluding_keys`
    are left out (their writer is about to publish them again)."""

    def __init__(self, segments=(), excluding_keys=(), now=None):
        now = now_ns() if now is None else now
        self.generation = 0
        self.last_sequence = 0
        newest, keyless = {}, {}
        for segment in segments:
            self.generation = max(self.generation, segment.generation)
            self.last_sequence = max(self.last_sequence, segment.base_sequence)
            try:
                self.last_sequence = max(self.last_sequence, segment.live_state().last_sequence)
                records = list(_valid_prefix(segment))
            except SegmentError:
                continue
            for chunk in records:
                self.last_sequence = max(self.last_sequence, chunk.sequence)
                if not chunk.live(now) or chunk.key in excluding_keys:
                    continue
                if not chunk.key:
                    keyless[chunk.sequence] = chunk
                elif chunk.key not in newest or newest[chunk.key].sequence < chunk.sequence:
                    newest[chunk.key] = chunk
        self.chunks = sorted(list(newest.values()) + list(keyless.values()), key=lambda c: c.sequence)

    @property
    def record_bytes(self):
        return sum(c.length for c in self.chunks)


def _valid_prefix(segment):
    """A segment's records up to its first invalid one."""
    try:
        for record in segment.records():
            yield record
    except SegmentError:
        return


class ChannelWriter:
    """Appends chunks to a channel's current segment and collects garbage when it is
    full or half dead (the Swift defaults: dead bytes at half the record area; a new
    generation keeps at most a quarter of it, the newest live chunks)."""

    def __init__(self, channel, capacity=64 << 20, dead_ratio=0.5, retain_ratio=0.25, lineage=None):
        self.channel = channel
        self.capacity = max((capacity + F.PAGE - 1) // F.PAGE * F.PAGE, F.MINIMUM_SIZE)
        self.dead_ratio = dead_ratio
        self.retain_ratio = retain_ratio
        lineage = lineage or Lineage()
        first = self.capacity + (lineage.record_bytes + F.PAGE - 1) // F.PAGE * F.PAGE
        self.current = SegmentWriter(channel, first, lineage.generation + 1, lineage.last_sequence)
        self.last_sequence = lineage.last_sequence
        self._keys = {}                 # key -> (offset, length) of its live record in current
        self._reserved = None
        self.inherited = self._inherit(lineage.chunks)

    def _inherit(self, chunks):
        """Copies a lineage's chunks byte for byte, validated again in the new segment
        (a departed writer could rewrite its mapping between the first look and the copy)."""
        segment = self.current
        kept = 0
        check_reader = Segment(segment.fd) if chunks else None
        for chunk in chunks:
            offset = segment.end
            record = bytes(chunk.segment._map[chunk.offset:chunk.end])
            segment.map[offset:offset + len(record)] = record
            struct.pack_into("<I", segment.map, offset + F.RECORD_FLAGS_OFFSET, 0)
            try:
                check = check_reader.record(offset, offset + len(record))
            except SegmentError:
                segment.map[offset:offset + len(record)] = bytes(len(record))
                continue
            segment.commit(offset + len(record), max(self.last_sequence, segment.base_sequence), 1, len(record))
            if check.key:
                self._keys[check.key] = (offset, len(record))
            kept += 1
        struct.pack_into("<Q", segment.map, F.LAST_SEQUENCE, self.last_sequence)
        return kept

    @property
    def max_payload(self):
        return self.capacity - F.HEADER_SIZE - F.RECORD_HEADER

    def reserve(self, length, key="", expiry=0, attributes=None):
        """Space for a chunk of `length` bytes: returns (writable memoryview, rotation or
        None). Fill the view, then :meth:`commit`. A rotation (old, new) means a
        collection was needed first: register `new`, then :meth:`retire` `old`.
        `attributes`: a mapping written with the chunk (FORMAT.md, "Attributes")."""
        if self._reserved is not None:
            raise InvalidArgument("a reservation is already open; commit it first")
        key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(key) > F.MAX_KEY:
            raise InvalidArgument("key is %d bytes; the limit is %d" % (len(key), F.MAX_KEY))
        if not isinstance(length, int) or length < 0:
            raise InvalidArgument("length %r is not a byte count" % (length,))
        block = attributes_block(attributes, length)
        _, record_length = _record_layout(len(key), length, len(block))
        if record_length > self.capacity - F.HEADER_SIZE:
            raise InvalidArgument("a chunk of %d bytes does not fit a segment of %d bytes (at most %d with an empty key)"
                                  % (length, self.capacity, self.max_payload))
        rotation = None
        area = self.current.capacity - F.HEADER_SIZE
        if record_length > self.current.free or self.current.dead_bytes >= self.dead_ratio * area:
            rotation = self.collect(record_length)
        sequence = self.last_sequence + 1
        offset, record_length, payload_at = self.current.write_record(sequence, key, length, now_ns(), expiry, block)
        self._reserved = (offset, record_length, sequence, key)
        view = memoryview(self.current.map)[payload_at:payload_at + length]
        return view, rotation

    def commit(self):
        """Commits the open reservation; returns (segment, sequence, record offset,
        payload offset)."""
        if self._reserved is None:
            raise InvalidArgument("no reservation is open")
        offset, length, sequence, key = self._reserved
        self._reserved = None
        segment = self.current
        segment.commit(offset + length, sequence, 1, length)
        self.last_sequence = sequence
        if key:
            previous = self._keys.get(key)
            if previous is not None:
                segment.mark_obsolete(*previous)
            self._keys[key] = (offset, length)
        payload_offset = struct.unpack_from("<I", segment.map, offset + 48)[0]
        return segment, sequence, offset, offset + payload_offset

    def append(self, payload, key="", expiry=0, attributes=None):
        """Copies `payload` (bytes-like) into a new chunk and commits it. Returns
        (rotation or None, segment, sequence, payload offset)."""
        payload = memoryview(payload).cast("B")
        view, rotation = self.reserve(len(payload), key, expiry, attributes)
        view[:] = payload
        view.release()
        segment, sequence, _, payload_offset = self.commit()
        return rotation, segment, sequence, payload_offset

    def collect(self, room=0):
        """Copies the live chunks (newest first, up to the retention budget) into
        generation + 1, which becomes current. Returns (old, new); the old one is
        retired by :meth:`retire` once the new one is registered."""
        old = self.current
        now = now_ns()
        area = self.capacity - F.HEADER_SIZE
        budget = min(int(self.retain_ratio * area), area - min(room, area))
        live = []
        offset = F.HEADER_SIZE
        m = old.map
        while offset < old.end:
            length, = struct.unpack_from("<Q", m, offset + 8)
            flags, = struct.unpack_from("<I", m, offset + 4)
            expiry, = struct.unpack_from("<Q", m, offset + 32)
            if not flags & F.OBSOLETE and (expiry == 0 or expiry > now):
                live.append((offset, length))
            offset += length
        kept, total = [], 0
        for record in reversed(live):
            if total + record[1] > budget:
                break
            total += record[1]
            kept.append(record)
        kept.reverse()
        new = SegmentWriter(self.channel, self.capacity, old.generation + 1, self.last_sequence)
        keys = {}
        for offset, length in kept:
            end = new.end
            new.map[end:end + length] = m[offset:offset + length]
            struct.pack_into("<I", new.map, end + F.RECORD_FLAGS_OFFSET, 0)
            sequence, = struct.unpack_from("<Q", new.map, end + 16)
            key_length, = struct.unpack_from("<H", new.map, end + 52)
            new.commit(end + length, sequence, 1, length)
            if key_length:
                keys[bytes(new.map[end + 64:end + 64 + key_length])] = (end, length)
        # The new segment's last sequence is the channel's, even if the newest chunks
        # were obsolete and not copied.
        struct.pack_into("<Q", new.map, F.LAST_SEQUENCE, self.last_sequence)
        new.last_sequence = self.last_sequence
        self.current = new
        self._keys = keys
        return old, new

    def close(self):
        self.current.close()
