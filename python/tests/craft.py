"""Hand-made segments for the corruption tests: bytes laid out exactly as
docs/FORMAT.md says, put into a memfd and sealed (or not) from Python. Test code only,
independent of the package's writer, so that it can lay out what no writer would."""
import fcntl
import os
import struct

from shmbus import format as F


def record(sequence, key=b"", payload=b"", timestamp=1767225600000000000, expiry=0, flags=0, attributes=b"",
           attributes_length=None, payload_offset=None):
    """A record; `attributes` is a raw block (see :func:`block`) put at align8(64 +
    key length), `attributes_length` (default its size) and `payload_offset` (default
    the layout's) may lie about it."""
    key = key.encode() if isinstance(key, str) else key
    attributes_at = (64 + len(key) + 7) & ~7
    if payload_offset is None:
        payload_offset = F.align64(attributes_at + len(attributes)) if attributes else F.align64(64 + len(key))
    length = F.align64(max(payload_offset + len(payload), attributes_at + len(attributes)))
    alen = len(attributes) if attributes_length is None else attributes_length
    head = bytearray(F.RECORD_STRUCT.pack(F.RECORD_MAGIC, 0, length, sequence, timestamp, expiry, len(payload),
                                          payload_offset, len(key), alen, 0))
    checksum = F.mix64(key, F.mix64(bytes(head[:56]), F.RECORD_SEED))
    struct.pack_into("<Q", head, 56, checksum)
    struct.pack_into("<I", head, 4, flags)
    out = bytearray(length)
    out[:64] = head
    out[64:64 + len(key)] = key
    out[attributes_at:attributes_at + len(attributes)] = attributes
    out[payload_offset:payload_offset + len(payload)] = payload
    return bytes(out)


def entry(name, kind, value, name_length=None, value_length=None, pad=True):
    """One attributes entry, raw: `name` and `value` bytes (str is UTF-8), padded to 8."""
    name = name.encode() if isinstance(name, str) else name
    value = value.encode() if isinstance(value, str) else value
    out = struct.pack("<BBH", len(name) if name_length is None else name_length, kind,
                      len(value) if value_length is None else value_length) + name + value
    return out + bytes(-len(out) % 8 if pad else 0)


def string(name, text):
    return entry(name, 1, text)


def int64(name, value):
    return entry(name, 2, struct.pack("<q", value))


def ints(name, values):
    return entry(name, 3, struct.pack("<%dq" % len(values), *values))


def float64(name, value):
    return entry(name, 4, struct.pack("<d", value))


def block(*entries, checksum=None):
    """An attributes block of raw entries, its checksum right unless given."""
    body = b"".join(entries)
    body += bytes(-len(body) % 8)
    stored = F.mix64(body, 0x53484D4255534154) if checksum is None else checksum
    return struct.pack("<Q", stored) + body


def segment(channel="py/crafted", records=(), capacity=8 * 4096, generation=1, base_sequence=0, segment_id=None,
            retired=False, successor=None, version=F.VERSION):
    out = bytearray(capacity)
    segment_id = segment_id or bytes(range(1, 17))
    struct.pack_into("<QIIQ", out, 0, F.MAGIC, version, F.HEADER_SIZE, capacity)
    out[24:40] = segment_id
    struct.pack_into("<QQQIH", out, 40, generation, base_sequence, 1767225600000000000, 4242, len(channel))
    out[72:72 + len(channel)] = channel.encode()
    struct.pack_into("<Q", out, 272, F.mix64(bytes(out[:272]), F.HEADER_SEED))
    offset = F.HEADER_SIZE
    last = base_sequence
    for r in records:
        out[offset:offset + len(r)] = r
        offset += len(r)
        last = max(last, struct.unpack_from("<Q", r, 16)[0])
    struct.pack_into("<QQQ", out, F.COMMITTED_END, offset, last, len(records))
    if retired:
        out[F.SUCCESSOR_ID:F.SUCCESSOR_ID + 16] = successor if successor is not None else bytes(range(17, 33))
        struct.pack_into("<I", out, F.STATE, F.RETIRED)
    return out


def memfd(data, seals=F.REQUIRED_SEALS, size=None):
    """A memfd holding `data` (its size `size`, default len(data)) with `seals` added."""
    fd = os.memfd_create("shmbus:test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size if size is not None else len(data))
    os.pwrite(fd, bytes(data), 0)
    if seals:
        fcntl.fcntl(fd, F.F_ADD_SEALS, seals)
    return fd
