"""The constants and pure functions of docs/FORMAT.md (version 1): offsets, seals,
the mix64 checksum, channel names. No I/O here, so that every other module (and a
test) uses the same numbers, which the document's own test checks against Swift.
"""
import struct

# "Seals" (Linux's numbers, <linux/fcntl.h>)
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 0x1, 0x2, 0x4, 0x8, 0x10
REQUIRED_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE
DOORBELL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW

# "Header"
MAGIC = 0x31475355424D4853          # "SHMBUSG1"
VERSION = 1
HEADER_SIZE = 4096
PAGE = 4096
MINIMUM_SIZE = HEADER_SIZE + PAGE
CAPACITY_OFFSET = 16
SEGMENT_ID_OFFSET = 24
GENERATION_OFFSET, BASE_SEQUENCE_OFFSET, CREATED_OFFSET, WRITER_PID_OFFSET = 40, 48, 56, 64
CHANNEL_LENGTH_OFFSET, CHANNEL_OFFSET, MAX_CHANNEL = 68, 72, 200
HEADER_CHECKSUM_OFFSET = 272
COMMITTED_END, LAST_SEQUENCE, RECORD_COUNT = 384, 392, 400
LIVE_BYTES, DEAD_BYTES, LIVE_CHUNKS = 448, 456, 464
STATE, SUCCESSOR_ID = 512, 520
RETIRED = 0x1

# "Records"
RECORD_MAGIC = 0x4B4E4843           # "CHNK"
RECORD_HEADER = 64
RECORD_FLAGS_OFFSET = 4
OBSOLETE = 0x1
MAX_KEY = 255
RECORD_STRUCT = struct.Struct("<IIQQQQQIHHQ")   # the 64-byte record header

# "Doorbell"
DOORBELL_MAGIC = 0x524F4F44424D4853  # "SHMBDOOR"
DOORBELL_SIZE = 4096
DOORBELL_WORD, DOORBELL_SLEEPING, DOORBELL_AWAITING_SIGNAL = 8, 12, 16

# "Checksums"
HEADER_SEED = 0x53484D4255534844    # "SHMBUSHD"
RECORD_SEED = 0x53484D4255535243    # "SHMBUSRC"
MULTIPLIER = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def align64(n):
    return (n + 63) & ~63


def mix64(data, seed):
    """FORMAT.md, "Checksums": over little-endian 64-bit words, the xor-shift once per
    word inside the loop, a final partial word zero-padded. `data` is any bytes-like
    object; whole words are unpacked in one call (a 1 MiB payload takes ~40 ms)."""
    data = memoryview(data).cast("B")
    whole = len(data) & ~7
    h = seed
    if whole:
        for (w,) in struct.iter_unpack("<Q", data[:whole]):
            h = ((h ^ w) * MULTIPLIER) & MASK64
            h ^= h >> 29
    if whole < len(data):
        w = int.from_bytes(bytes(data[whole:]), "little")
        h = ((h ^ w) * MULTIPLIER) & MASK64
        h ^= h >> 29
    return h


_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/")


def channel_name_problem(name):
    """FORMAT.md, "Channel names": None when `name` (str or bytes) is valid, else what
    is wrong with it."""
    if isinstance(name, str):
        try:
            name = name.encode("ascii")
        except UnicodeEncodeError:
            return "only A-Z, a-z, 0-9 and _ . - / are allowed"
    if not 1 <= len(name) <= MAX_CHANNEL:
        return "length %d is not 1-200 bytes" % len(name)
    if any(b not in _NAME_CHARS for b in name):
        return "only A-Z, a-z, 0-9 and _ . - / are allowed"
    for component in name.split(b"/"):
        if not component:
            return "an empty component"
        if component == b"..":
            return "a '..' component"
    return None


def escape_path_component(name):
    """sd_bus_path_encode: every byte outside [A-Za-z0-9], and a leading digit,
    becomes _ and two lowercase hex digits (PROTOCOL.md, "Names and objects")."""
    out = []
    for i, b in enumerate(name.encode("utf-8")):
        c = chr(b)
        if (c.isascii() and c.isalpha()) or (c.isdigit() and i > 0):
            out.append(c)
        else:
            out.append("_%02x" % b)
    return "".join(out) if out else "_"
