#!/usr/bin/python3
"""Reads ShmBus segments: a reader written from docs/FORMAT.md alone (version 1).

Standard library only (os, fcntl, mmap, struct); no D-Bus. Give it segments as open
file descriptors or as paths (for example /proc/PID/fd/N of a process that holds one):
it checks the seals, maps each read-only, validates the header and every record
(bounds, checksums), and lists the chunks. It follows nothing across segments by
itself; pass every segment of a channel to read its lineage.

    shmbus_segment.py [--no-seals] [--payloads] [--latest KEY] SEGMENT...
    shmbus_segment.py --mix64 SEED:HEX...

Prints one JSON object per segment (header, live state, every record with its
payload's SHA-256), or with --latest the newest live chunk of KEY over the segments
given, the first one being the channel's current segment (FORMAT.md, "The newest chunk
of a key"). An invalid segment is reported as "shmbus_segment.py: <ErrorClass>: ..." on
stderr with exit status 2.

As a module:

    with Segment("/proc/1234/fd/7") as segment:
        for chunk in segment.chunks():          # live chunks, in file order
            print(chunk.sequence, chunk.key, bytes(chunk.payload[:16]))
"""
import argparse, hashlib, json, mmap, os, struct, sys, time
import fcntl

__all__ = ["Segment", "Record", "LiveState", "SegmentError", "NotSealed", "BadHeader",
           "UnsupportedVersion", "BadRecord", "mix64", "newest_chunk"]

# FORMAT.md, "Seals"
F_GET_SEALS = 1034
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_FUTURE_WRITE = 0x1, 0x2, 0x4, 0x10
REQUIRED_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE

# FORMAT.md, "Header"
MAGIC = 0x31475355424D4853          # "SHMBUSG1"
VERSION = 1
HEADER_SIZE = 4096
PAGE = 4096
HEADER_CHECKSUM_OFFSET = 272
COMMITTED_END, LAST_SEQUENCE, RECORD_COUNT = 384, 392, 400
LIVE_BYTES, DEAD_BYTES, LIVE_CHUNKS = 448, 456, 464
STATE, SUCCESSOR_ID = 512, 520
RETIRED = 0x1

# FORMAT.md, "Records"
RECORD_MAGIC = 0x4B4E4843           # "CHNK"
RECORD_HEADER = 64
OBSOLETE = 0x1
MAX_KEY = 255

# FORMAT.md, "Checksums"
HEADER_SEED = 0x53484D4255534844
RECORD_SEED = 0x53484D4255535243
MULTIPLIER = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


class SegmentError(Exception):
    """Anything wrong with a segment: what and where."""


class NotSealed(SegmentError):
    """The descriptor is not a memfd carrying the four required seals."""


class BadHeader(SegmentError):
    """The header (or the file's size) is invalid."""


class UnsupportedVersion(BadHeader):
    """The segment has a format version this reader does not know."""


class BadRecord(SegmentError):
    """A record is invalid; `offset` says where it starts."""

    def __init__(self, offset, message):
        super().__init__("record at offset %d: %s" % (offset, message))
        self.offset = offset


def mix64(data, seed):
    """FORMAT.md, "Checksums": the xor-shift once per word, inside the loop."""
    h = seed
    for i in range(0, len(data), 8):
        w = int.from_bytes(bytes(data[i:i + 8]).ljust(8, b"\0"), "little")
        h ^= w
        h = (h * MULTIPLIER) & MASK64
        h ^= h >> 29
    return h


def channel_name_problem(name):
    """FORMAT.md, "Channel names": None when valid, else what is wrong."""
    if not 1 <= len(name) <= 200:
        return "length %d is not 1-200 bytes" % len(name)
    allowed = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/"
    if any(b not in allowed for b in name):
        return "only A-Z, a-z, 0-9 and _ . - / are allowed"
    for component in name.split(b"/"):
        if not component:
            return "an empty component"
        if component == b"..":
            return "a '..' component"
    return None


class LiveState:
    """The mutable header fields at one instant (FORMAT.md, "Header")."""

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


class Record:
    """One validated record. `payload` is a zero-copy memoryview into the mapping."""

    def __init__(self, segment, offset, length, sequence, timestamp, expiry, key, payload):
        self._segment = segment
        self.offset = offset
        self.length = length
        self.sequence = sequence
        self.timestamp = timestamp
        self.expiry = expiry
        self.key = key
        self.payload = payload

    @property
    def end(self):
        return self.offset + self.length

    @property
    def flags(self):
        """The flags word now (the only record field that changes after commit)."""
        return struct.unpack_from("<I", self._segment._map, self.offset + 4)[0]

    @property
    def obsolete(self):
        return bool(self.flags & OBSOLETE)          # other bits: ignored

    def expired(self, now=None):
        now = time.clock_gettime_ns(time.CLOCK_REALTIME) if now is None else now
        return self.expiry != 0 and now >= self.expiry

    def live(self, now=None):
        return not self.obsolete and not self.expired(now)


class Segment:
    """A segment mapped read-only and validated (FORMAT.md, "Validation").

    `source` is a file descriptor (borrowed: duplicated, the caller keeps its own) or
    a path opened O_RDONLY (such as /proc/PID/fd/N).
    """

    def __init__(self, source, require_seals=True):
        if isinstance(source, int):
            fd = os.dup(source)
        else:
            try:
                fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                raise SegmentError("cannot open %s: %s" % (source, error.strerror)) from None
        try:
            self._open(fd, source, require_seals)
        finally:
            os.close(fd)         # the mapping stays valid without the descriptor

    def _open(self, fd, source, require_seals):
        if require_seals:
            try:
                target = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                target = ""
            if not target.startswith("/memfd:"):
                raise NotSealed("%s is not a memfd (%s)" % (source, target or "unknown"))
            try:
                seals = fcntl.fcntl(fd, F_GET_SEALS)
            except OSError:
                raise NotSealed("%s does not support sealing" % source) from None
            if seals & REQUIRED_SEALS != REQUIRED_SEALS:
                raise NotSealed("%s has seals 0x%x; 0x%x are required" % (source, seals, REQUIRED_SEALS))
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE + PAGE:
            raise BadHeader("the file is %d bytes; a segment takes at least %d" % (size, HEADER_SIZE + PAGE))
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self._view = memoryview(self._map)
        self.file_size = size
        self._read_header()

    def _read_header(self):
        head = bytes(self._map[0:HEADER_CHECKSUM_OFFSET + 8])     # read once, check the copy
        magic, version, header_size, capacity = struct.unpack_from("<QIIQ", head, 0)
        if magic != MAGIC:
            raise BadHeader("magic is 0x%x, not 0x%x (\"SHMBUSG1\")" % (magic, MAGIC))
        if version != VERSION:
            raise UnsupportedVersion("format version %d is not supported (this reader knows %d)" % (version, VERSION))
        if header_size != HEADER_SIZE:
            raise BadHeader("header size %d is not %d" % (header_size, HEADER_SIZE))
        stored = struct.unpack_from("<Q", head, HEADER_CHECKSUM_OFFSET)[0]
        computed = mix64(head[0:HEADER_CHECKSUM_OFFSET], HEADER_SEED)
        if stored != computed:
            raise BadHeader("header checksum mismatch (stored 0x%x, computed 0x%x)" % (stored, computed))
        if capacity % PAGE or capacity < HEADER_SIZE + PAGE or capacity > self.file_size:
            raise BadHeader("capacity %d is not a multiple of %d of at least %d within the file's %d bytes"
                            % (capacity, PAGE, HEADER_SIZE + PAGE, self.file_size))
        channel_length = struct.unpack_from("<H", head, 68)[0]
        if not 1 <= channel_length <= 200:
            raise BadHeader("channel name length %d is not in 1-200" % channel_length)
        channel = head[72:72 + channel_length]
        try:
            channel.decode("utf-8")
        except UnicodeDecodeError:
            raise BadHeader("channel name is not UTF-8") from None
        problem = channel_name_problem(channel)
        if problem:
            raise BadHeader("channel name %r: %s" % (channel, problem))
        segment_id = head[24:40]
        if segment_id == bytes(16):
            raise BadHeader("segment ID is zero")
        self.capacity = capacity
        self.name = segment_id.hex()
        self.channel = channel.decode("utf-8")
        self.generation, self.base_sequence, self.created = struct.unpack_from("<QQQ", head, 40)
        self.writer_pid = struct.unpack_from("<I", head, 64)[0]

    def live_state(self):
        """The mutable header fields, validated: `state` first, then `committed_end`."""
        m = self._map
        state = struct.unpack_from("<I", m, STATE)[0]
        committed_end = struct.unpack_from("<Q", m, COMMITTED_END)[0]
        if committed_end < HEADER_SIZE or committed_end > self.capacity or committed_end % 64:
            raise BadHeader("committed end %d is outside [%d, %d] or not a multiple of 64"
                            % (committed_end, HEADER_SIZE, self.capacity))
        retired = bool(state & RETIRED)                 # other bits: ignored
        successor = None
        if retired:
            successor = bytes(m[SUCCESSOR_ID:SUCCESSOR_ID + 16]).hex()
            if successor == "00" * 16 or successor == self.name:
                raise BadHeader("retired without a valid successor ID")
        last_sequence, record_count = struct.unpack_from("<QQ", m, LAST_SEQUENCE)
        live_bytes, dead_bytes, live_chunks = struct.unpack_from("<QQQ", m, LIVE_BYTES)
        return LiveState(committed_end, last_sequence, record_count, live_bytes, dead_bytes,
                         live_chunks, retired, successor)

    def record(self, offset, limit):
        """The record at `offset`, validated against `limit` (a committed end)."""
        if offset % 64:
            raise BadRecord(offset, "offset is not 64-byte aligned")
        if offset + RECORD_HEADER > limit:
            raise BadRecord(offset, "a record header does not fit below the committed end %d" % limit)
        head = bytes(self._map[offset:offset + RECORD_HEADER])     # read once, check the copy
        magic, _flags, length, sequence, timestamp, expiry, payload_length, payload_offset, key_length, _reserved, stored = \
            struct.unpack("<IIQQQQQIHHQ", head)
        if magic != RECORD_MAGIC:
            raise BadRecord(offset, "magic is 0x%x, not 0x%x (\"CHNK\")" % (magic, RECORD_MAGIC))
        if length < RECORD_HEADER or length % 64 or length > limit - offset:
            raise BadRecord(offset, "length %d is not a multiple of 64 of at least 64 below the committed end %d"
                            % (length, limit))
        if key_length > MAX_KEY:
            raise BadRecord(offset, "key length %d exceeds %d" % (key_length, MAX_KEY))
        if payload_offset % 64 or payload_offset < RECORD_HEADER + key_length:
            raise BadRecord(offset, "payload offset %d overlaps the header or key, or is not 64-byte aligned"
                            % payload_offset)
        if payload_offset > length or payload_length > length - payload_offset:
            raise BadRecord(offset, "payload (%d bytes at +%d) runs past the record's %d bytes"
                            % (payload_length, payload_offset, length))
        key = bytes(self._map[offset + RECORD_HEADER:offset + RECORD_HEADER + key_length])
        computed = mix64(key, mix64(head[0:4] + b"\0\0\0\0" + head[8:56], RECORD_SEED))
        if computed != stored:
            raise BadRecord(offset, "checksum mismatch (stored 0x%x, computed 0x%x)" % (stored, computed))
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(offset, "key is not UTF-8") from None
        start = offset + payload_offset
        return Record(self, offset, length, sequence, timestamp, expiry, key,
                      self._view[start:start + payload_length])

    def records(self):
        """Every committed record in file order, obsolete and expired ones included.
        Raises at the first invalid one."""
        limit = self.live_state().committed_end          # loaded once
        offset = HEADER_SIZE
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

    def close(self):
        self._view.release()
        self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except BufferError:
            pass        # payload views still in use keep the mapping


def newest_chunk(segments, key, current=None, now=None):
    """FORMAT.md, "The newest chunk of a key", step 2, over segments a caller holds:
    retired ones left out, the current one first (`current`, a name; else none is
    preferred), then by generation, highest first; the first segment that has a live
    chunk of `key` wins. Returns (segment, record), or (None, None)."""
    active = [s for s in segments if not s.live_state().retired]
    order = sorted(active, key=lambda s: (s.name == current, s.generation), reverse=True)
    for segment in order:
        found = segment.latest(key, now)
        if found is not None:
            return segment, found
    return None, None


def _describe(segment, payloads=False):
    state = segment.live_state()
    now = time.clock_gettime_ns(time.CLOCK_REALTIME)
    records = [{
        "offset": r.offset, "sequence": r.sequence, "key": r.key, "length": len(r.payload),
        "sha256": hashlib.sha256(r.payload).hexdigest(), "timestamp": r.timestamp, "expiry": r.expiry,
        "obsolete": r.obsolete, "expired": r.expired(now),
        **({"payload": r.payload.hex()} if payloads else {}),
    } for r in segment.records()]
    return {
        "segment": segment.name, "channel": segment.channel, "generation": segment.generation,
        "base_sequence": segment.base_sequence, "capacity": segment.capacity, "writer_pid": segment.writer_pid,
        "committed_end": state.committed_end, "last_sequence": state.last_sequence,
        "record_count": state.record_count, "retired": state.retired, "successor": state.successor,
        "records": records,
    }


def _source(text):
    return int(text) if text.isdigit() else text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("segments", nargs="*", help="a descriptor number or a path")
    parser.add_argument("--no-seals", action="store_true", help="accept files without the seals (copies)")
    parser.add_argument("--latest", metavar="KEY", help="print only the newest live chunk of KEY")
    parser.add_argument("--payloads", action="store_true", help="include each payload in hex")
    parser.add_argument("--mix64", nargs="+", metavar="SEED:HEX", help="print mix64 of HEX bytes from SEED")
    args = parser.parse_args(argv)
    name = os.path.basename(sys.argv[0])
    if args.mix64:
        for item in args.mix64:
            seed, _, data = item.partition(":")
            print("0x%016x" % mix64(bytes.fromhex(data), int(seed, 0)))
        return 0
    try:
        segments = [Segment(_source(s), require_seals=not args.no_seals) for s in args.segments]
        if args.latest is not None:
            segment, chunk = newest_chunk(segments, args.latest, current=segments[0].name if segments else None)
            print(json.dumps(None if chunk is None else {
                "segment": segment.name, "sequence": chunk.sequence, "key": chunk.key,
                "sha256": hashlib.sha256(chunk.payload).hexdigest()}))
        else:
            for segment in segments:
                print(json.dumps(_describe(segment, args.payloads)))
    except SegmentError as error:
        print("%s: %s: %s" % (name, type(error).__name__, error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
