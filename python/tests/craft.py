"""Hand-made segments for the corruption tests: bytes laid out exactly as
docs/FORMAT.md says, put into a memfd and sealed (or not) from Python. Test code only:
the package's Publisher side is not written yet."""
import fcntl
import os
import struct

from shmbus import format as F


def record(sequence, key=b"", payload=b"", timestamp=1767225600000000000, expiry=0, flags=0):
    key = key.encode() if isinstance(key, str) else key
    payload_offset = F.align64(64 + len(key))
    length = F.align64(payload_offset + len(payload))
    head = bytearray(F.RECORD_STRUCT.pack(F.RECORD_MAGIC, 0, length, sequence, timestamp, expiry, len(payload),
                                          payload_offset, len(key), 0, 0))
    checksum = F.mix64(key, F.mix64(bytes(head[:56]), F.RECORD_SEED))
    struct.pack_into("<Q", head, 56, checksum)
    struct.pack_into("<I", head, 4, flags)
    out = bytearray(length)
    out[:64] = head
    out[64:64 + len(key)] = key
    out[payload_offset:payload_offset + len(payload)] = payload
    return bytes(out)


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
