"""A chunk's attributes: docs/FORMAT.md, "Attributes" (version 1's compatible
extension). Parses and checks a block exactly as its "Checks" say, and encodes one
from a mapping. Standard library only; numpy is needed only by :mod:`shmbus.arrays`.

The block is untrusted shared memory: :func:`parse` takes a copy of its bytes (read
once) and raises :class:`Problem` naming what is wrong and where (an offset in the
block); the reader turns it into a BadAttributes (a BadRecord), the writer into an
InvalidArgument. Values come out as str, int, tuple of int and float, in the
block's order, in a read-only :class:`Attributes` mapping.
"""
import numbers
import re
import struct
from collections import namedtuple
from collections.abc import Mapping

from . import format as F

__all__ = ["Attributes", "ArrayLayout", "ImageLayout", "EMPTY", "parse", "encode", "placement_problem",
           "attributes_offset", "DTYPES", "PIXEL_FORMATS", "SEED"]

SEED = 0x53484D4255534154            # "SHMBUSAT"
STRING, INT64, INT64_ARRAY, FLOAT64 = 1, 2, 3, 4
TYPE_NAMES = {STRING: "string", INT64: "int64", INT64_ARRAY: "int64 array", FLOAT64: "float64"}
MAX_STRING = 4096
MAX_ARRAY_BYTES = 512                 # 64 int64s
MAX_NAME = 63
MAX_BLOCK = 0xFFF8                    # attributes_length is a u16 and a multiple of 8
MAX_DIMENSIONS = 32

#: "Well-known attributes": name -> type.
WELL_KNOWN = {"content-type": STRING, "dtype": STRING, "shape": INT64_ARRAY, "strides": INT64_ARRAY,
              "width": INT64, "height": INT64, "stride": INT64, "pixel-format": STRING}

#: The element types and their sizes in bytes.
DTYPES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
          "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16}

#: The packed single-plane pixel formats a reader knows: fourcc -> bytes per pixel.
PIXEL_FORMATS = {"R8  ": 1, "R16 ": 2, "GR88": 2, "RG24": 3, "BG24": 3, "XR24": 4, "AR24": 4, "XB24": 4,
                 "AB24": 4, "RX24": 4, "RA24": 4, "BX24": 4, "BA24": 4, "YUYV": 2, "UYVY": 2}

_NAME = re.compile(rb"[a-z][a-z0-9._-]*")           # bytes: no Unicode classes sneak in
_ENTRY_HEAD = struct.Struct("<BBH")
_INT64 = struct.Struct("<q")
_FLOAT64 = struct.Struct("<d")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

#: The array's element type, dimensions and strides in bytes (the row-major default
#: when the chunk gives none; None when it gives none and the dtype is unknown),
#: `itemsize` None for an unknown dtype, `extent` the bytes it spans (None: unknown).
ArrayLayout = namedtuple("ArrayLayout", "dtype shape strides itemsize extent")
#: The image's size, row stride (the packed default when absent; None if unknown),
#: fourcc, and bytes per pixel (None for a format this reader does not know).
ImageLayout = namedtuple("ImageLayout", "width height stride pixel_format bytes_per_pixel")


class Problem(Exception):
    """What is wrong with a block; `where` is an offset in the block, or None."""

    def __init__(self, message, where=None):
        super().__init__(message)
        self.message = message
        self.where = where


def align8(n):
    return (n + 7) & ~7


def attributes_offset(key_length):
    """Where the block starts in the record: align8(64 + key_length)."""
    return align8(F.RECORD_HEADER + key_length)


def placement_problem(key_length, attributes_length, payload_offset):
    """The block's own bounds in its record ("Checks", first rule), or None."""
    if attributes_length == 0:
        return None
    if attributes_length % 8 or attributes_length < 8:
        return "attributes length %d is not a multiple of 8 of at least 8" % attributes_length
    start = attributes_offset(key_length)
    if start + attributes_length > payload_offset:
        return ("the attributes block (%d bytes at +%d) runs past the payload offset %d"
                % (attributes_length, start, payload_offset))
    return None


class Attributes(Mapping):
    """A read-only, ordered mapping of a chunk's attributes (name -> str, int, tuple
    of int or float), with the well-known ones checked. ``array`` and ``image`` are
    the layouts they describe (:class:`ArrayLayout`, :class:`ImageLayout`) or None."""

    __slots__ = ("_entries", "array", "image")

    def __init__(self, entries, array=None, image=None):
        self._entries = entries
        self.array = array
        self.image = image

    def __getitem__(self, name):
        return self._entries[name]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return "Attributes(%r)" % (self._entries,)

    @property
    def content_type(self):
        return self._entries.get("content-type")


EMPTY = Attributes({})


def _name(raw, where):
    if not 1 <= len(raw) <= MAX_NAME:
        raise Problem("a name of %d bytes (1-%d)" % (len(raw), MAX_NAME), where)
    if _NAME.fullmatch(raw) is None:
        raise Problem("name %r is not a lowercase letter then lowercase letters, digits, '-', '_' or '.'"
                      % raw.decode("ascii", "backslashreplace"), where)
    return raw.decode("ascii")


def _value(name, kind, raw, where):
    """The value of a known type, or raises; (False, None) for an unknown type."""
    if kind == STRING:
        if len(raw) > MAX_STRING:
            raise Problem("%r: a string of %d bytes (at most %d)" % (name, len(raw), MAX_STRING), where)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem("%r: the string is not UTF-8" % name, where) from None
        if "\0" in text:
            raise Problem("%r: the string holds a NUL" % name, where)
        return True, text
    if kind == INT64 or kind == FLOAT64:
        if len(raw) != 8:
            raise Problem("%r: a %s of %d bytes (8)" % (name, TYPE_NAMES[kind], len(raw)), where)
        return True, (_INT64 if kind == INT64 else _FLOAT64).unpack(raw)[0]
    if kind == INT64_ARRAY:
        if len(raw) % 8 or len(raw) > MAX_ARRAY_BYTES:
            raise Problem("%r: an int64 array of %d bytes (a multiple of 8, at most %d)"
                          % (name, len(raw), MAX_ARRAY_BYTES), where)
        return True, struct.unpack("<%dq" % (len(raw) // 8), raw)
    return False, None


def parse(block, payload_length):
    """The :class:`Attributes` of a block (bytes, its checksum first), checked against
    a payload of `payload_length` bytes; raises :class:`Problem`."""
    block = bytes(block)
    size = len(block)
    if size % 8 or size < 8:
        raise Problem("a block of %d bytes (a multiple of 8, at least 8)" % size, 0)
    stored = struct.unpack_from("<Q", block, 0)[0]
    computed = F.mix64(block[8:], SEED)
    if stored != computed:
        raise Problem("checksum mismatch (stored 0x%x, computed 0x%x)" % (stored, computed), 0)
    entries, offsets, seen = {}, {}, set()
    at = 8
    while at < size:
        # size and at are multiples of 8, so an entry's 4-byte head always fits.
        name_length, kind, value_length = _ENTRY_HEAD.unpack_from(block, at)
        if not 1 <= name_length <= MAX_NAME:
            raise Problem("entry at +%d: name length %d (1-%d)" % (at, name_length, MAX_NAME), at)
        end = at + 4 + name_length + value_length
        if end > size:
            raise Problem("entry at +%d (%d-byte name, %d-byte value) runs past the block's %d bytes"
                          % (at, name_length, value_length, size), at)
        padded = at + align8(end - at)
        if padded > size:
            raise Problem("entry at +%d: its padding runs past the block's %d bytes" % (at, size), at)
        try:
            name = _name(block[at + 4:at + 4 + name_length], at)
            if name in seen:
                raise Problem("name %r appears twice" % name, at)
            seen.add(name)
            known, value = _value(name, kind, block[at + 4 + name_length:end], at)
        except Problem as problem:
            raise Problem("entry at +%d: %s" % (at, problem.message), at) from None
        if known:
            entries[name] = value
            offsets[name] = at
        elif name in WELL_KNOWN:
            raise Problem("entry at +%d: %r has type %d, not %s" % (at, name, kind, TYPE_NAMES[WELL_KNOWN[name]]), at)
        # An unknown type is skipped: its length is known, its meaning is not ours.
        at = padded
    array, image = _well_known(entries, offsets, payload_length)
    return Attributes(entries, array, image)


_TYPE_OF = {str: STRING, int: INT64, float: FLOAT64, tuple: INT64_ARRAY}     # what parse makes of each type


def _typed(entries, offsets, name):
    value = entries.get(name)
    if value is None:
        return None
    want, got = WELL_KNOWN[name], _TYPE_OF[type(value)]
    if got != want:
        raise Problem("%r is a %s, not a %s" % (name, TYPE_NAMES[got], TYPE_NAMES[want]), offsets[name])
    return value


def _well_known(entries, offsets, payload_length):
    """The "Checks" on well-known names: types, ranges, parts, extents."""
    if not any(name in entries for name in WELL_KNOWN):
        return None, None                   # the application's own names only
    v = {name: _typed(entries, offsets, name) for name in WELL_KNOWN}
    content_type = v["content-type"]
    if content_type is not None and not (1 <= len(content_type) <= 255
                                         and all(" " <= c <= "~" for c in content_type)):
        raise Problem("'content-type' is not 1-255 printable ASCII bytes", offsets["content-type"])
    return _array(v, offsets, payload_length), _image(v, offsets, payload_length)


def _array(v, offsets, payload_length):
    dtype, shape, strides = v["dtype"], v["shape"], v["strides"]
    if dtype is None and shape is None:
        if strides is not None:
            raise Problem("'strides' without 'dtype' and 'shape'", offsets["strides"])
        return None
    if dtype is None or shape is None:
        present = "dtype" if dtype is not None else "shape"
        raise Problem("%r without %r" % (present, "shape" if present == "dtype" else "dtype"), offsets[present])
    if len(shape) > MAX_DIMENSIONS or any(n < 0 for n in shape):
        raise Problem("'shape' %r: 0-%d dimensions, each >= 0" % (list(shape), MAX_DIMENSIONS), offsets["shape"])
    if strides is not None:
        if len(strides) != len(shape):
            raise Problem("'strides' has %d elements and 'shape' %d" % (len(strides), len(shape)), offsets["strides"])
        if any(s < 0 for s in strides):
            raise Problem("'strides' %r: each >= 0" % (list(strides),), offsets["strides"])
    if not dtype:
        # FORMAT.md allows unknown dtypes, not none at all; the Swift reader refuses it too.
        raise Problem("'dtype' is empty", offsets["dtype"])
    itemsize = DTYPES.get(dtype)
    if itemsize is None:
        return ArrayLayout(dtype, shape, strides, None, None)    # a layout this reader cannot check
    if strides is None:
        strides, step = [], itemsize
        for n in reversed(shape):
            strides.append(step)
            step *= max(n, 1)            # as numpy and the Swift reader do for a 0 dimension
        strides = tuple(reversed(strides))
    # Python integers do not overflow: an extent past any u64 is simply past the payload.
    extent = 0 if 0 in shape else itemsize + sum((n - 1) * s for n, s in zip(shape, strides))
    if extent > payload_length:
        raise Problem("the array (%s %r, strides %r) spans %d bytes; the payload has %d"
                      % (dtype, list(shape), list(strides), extent, payload_length), offsets["shape"])
    return ArrayLayout(dtype, shape, strides, itemsize, extent)


def _image(v, offsets, payload_length):
    width, height, stride, fourcc = v["width"], v["height"], v["stride"], v["pixel-format"]
    parts = {"width": width, "height": height, "pixel-format": fourcc}
    present = [name for name, value in parts.items() if value is not None]
    if not present:
        if stride is not None:
            raise Problem("'stride' without 'width', 'height' and 'pixel-format'", offsets["stride"])
        return None
    if len(present) != 3:
        missing = [name for name in parts if name not in present]
        raise Problem("an image with %s and without %s" % (", ".join(present), ", ".join(missing)),
                      offsets[present[0]])
    for name, value in (("width", width), ("height", height), ("stride", stride)):
        if value is not None and value < 1:
            raise Problem("%r is %d (at least 1)" % (name, value), offsets[name])
    if len(fourcc) != 4 or not all(" " <= c <= "~" for c in fourcc):
        raise Problem("'pixel-format' %r is not a fourcc (4 ASCII characters)" % fourcc, offsets["pixel-format"])
    bpp = PIXEL_FORMATS.get(fourcc)
    if bpp is None:
        return ImageLayout(width, height, stride, fourcc, None)  # planar, compressed, or new to us
    row = width * bpp
    if stride is None:
        stride = row
    elif stride < row:
        raise Problem("'stride' %d is below width %d x %d bytes per pixel" % (stride, width, bpp), offsets["stride"])
    if (height - 1) * stride + row > payload_length:
        raise Problem("the image (%dx%d %s, stride %d) spans %d bytes; the payload has %d"
                      % (width, height, fourcc, stride, (height - 1) * stride + row, payload_length),
                      offsets["width"])
    return ImageLayout(width, height, stride, fourcc, bpp)


# MARK: writing

def _encode_value(name, value):
    if isinstance(value, bool):
        raise Problem("%r: a bool is neither int nor string here; say 1/0 or 'true'/'false'" % name)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > MAX_STRING or "\0" in value:
            raise Problem("%r: a string of at most %d UTF-8 bytes without NUL" % (name, MAX_STRING))
        return STRING, raw
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, bool) or not hasattr(item, "__index__"):
                raise Problem("%r: an array holds ints only, not %r" % (name, item))
            items.append(item.__index__())
        if len(items) > MAX_ARRAY_BYTES // 8 or any(not _INT64_MIN <= i <= _INT64_MAX for i in items):
            raise Problem("%r: an int64 array of at most %d elements" % (name, MAX_ARRAY_BYTES // 8))
        return INT64_ARRAY, struct.pack("<%dq" % len(items), *items)
    if hasattr(value, "__index__"):
        number = value.__index__()
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise Problem("%r: %d is outside int64" % (name, number))
        return INT64, _INT64.pack(number)
    if isinstance(value, numbers.Real):          # float, numpy's floats
        return FLOAT64, _FLOAT64.pack(float(value))
    raise Problem("%r: %s is not a str, int, list of ints or float" % (name, type(value).__name__))


def encode(attributes, payload_length=None):
    """The block for `attributes` (a mapping name -> str / int / list or tuple of ints
    / float, written in its order), b"" when it is empty or None. Checked as a reader
    checks it (the extents too when `payload_length` is given); raises Problem."""
    if not attributes:
        return b""
    if not isinstance(attributes, Mapping):
        raise Problem("attributes are a mapping of name to value, not %s" % type(attributes).__name__)
    body = bytearray()
    for name, value in attributes.items():
        if not isinstance(name, str):
            raise Problem("a name is a string, not %r" % (name,))
        try:
            raw_name = name.encode("ascii")
        except UnicodeEncodeError:
            raise Problem("name %r is not ASCII" % name) from None
        _name(raw_name, None)
        kind, raw = _encode_value(name, value)
        entry = _ENTRY_HEAD.pack(len(raw_name), kind, len(raw)) + raw_name + raw
        body += entry + bytes(align8(len(entry)) - len(entry))
    if 8 + len(body) > MAX_BLOCK:
        raise Problem("the attributes take %d bytes; a block holds at most %d" % (8 + len(body), MAX_BLOCK))
    block = struct.pack("<Q", F.mix64(bytes(body), SEED)) + bytes(body)
    # Read back as a reader will: duplicates, well-known types, parts and extents.
    parsed = parse(block, (1 << 64) - 1 if payload_length is None else payload_length)
    array = parsed.array
    if array is not None and array.itemsize is not None and "strides" not in parsed:
        # A zero dimension makes the extent 0 whatever the others are (FORMAT.md), but
        # the Swift reader computes the row-major strides first, in Int64, and refuses
        # a shape whose product overflows: never write what a reader refuses.
        product = array.itemsize
        for n in array.shape:
            product *= max(n, 1)
        if product > _INT64_MAX:
            raise Problem("the row-major strides of %r overflow int64" % (list(array.shape),))
    return block
