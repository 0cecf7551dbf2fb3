"""docs/FORMAT.md, "Attributes": every rule of "Checks" broken in turn in hand-made
memfds (craft.py lays the bytes out without the package's writer), each refused as a
BadAttributes (a BadRecord at the record's offset) naming what is wrong; and what must
be accepted: unknown entry types skipped, unknown names kept, unknown dtypes and pixel
formats passed on unchecked."""
import math
import os
import struct

import pytest

import shmbus
from shmbus import BadAttributes, BadRecord, NotAnArray

import craft

R2 = 4096 + 192          # the second record's offset (the first, key "a" and 10 bytes, takes 192)
ARRAY = (craft.string("dtype", "float32"), craft.ints("shape", [2, 3]))
IMAGE = (craft.int64("width", 4), craft.int64("height", 2), craft.string("pixel-format", "AB24"))


def segment_with(second):
    return craft.segment(records=[craft.record(1, "a", b"x" * 10), second, craft.record(3, "k", b"z" * 64)])


def read_all(data):
    """Every record of `data` as a sealed segment: the chunks, or the exception."""
    fd = craft.memfd(data)
    try:
        with shmbus.Segment(fd) as segment:
            return [(c.sequence, dict(c.attributes)) for c in segment.records()]
    except Exception as error:          # anything but BadAttributes fails the caller's check
        return error
    finally:
        os.close(fd)


def refused(second):
    error = read_all(segment_with(second))
    assert isinstance(error, BadAttributes), repr(error)
    assert isinstance(error, BadRecord) and error.offset == R2, repr(error)
    return str(error)


def chunk(*entries, payload=bytes(24), key="t", **record):
    return craft.record(2, key, payload, attributes=craft.block(*entries), **record)


# "the block: attributes_length a multiple of 8, at least 8, and attributes_offset +
# attributes_length <= payload_offset; the checksum; every entry inside the block, its
# name valid and not repeated, its padding to 8 ending within the block; for the types
# above, value_length as the type table says and strings valid UTF-8 without NUL"
BLOCK_CASES = [
    ("length not a multiple of 8", craft.record(2, "t", b"y", attributes=craft.block(*ARRAY), attributes_length=44),
     "attributes length 44 is not a multiple of 8"),
    ("length below 8", craft.record(2, "t", b"y", attributes=craft.block(), attributes_length=4),
     "attributes length 4 is not a multiple of 8 of at least 8"),
    # Key "t": the block starts at 72; 64 bytes of it would end at 136, past the payload at 128.
    ("block past the payload offset", craft.record(2, "t", b"y", attributes=craft.block(*ARRAY) + bytes(16),
                                                   payload_offset=128),
     "runs past the payload offset 128"),
    ("checksum", craft.record(2, "t", bytes(24), attributes=craft.block(*ARRAY, checksum=5)),
     "checksum mismatch (stored 0x5"),
    ("name length 0", chunk(craft.entry("", 1, "x")), "name length 0 (1-63)"),
    ("name length 64", chunk(craft.entry("a" * 64, 1, "x")), "name length 64 (1-63)"),
    ("entry past the block", chunk(craft.entry("org.x", 1, "abc", value_length=400)), "runs past the block's"),
    ("name with a capital", chunk(craft.string("Dtype", "x")), "name 'Dtype' is not a lowercase letter"),
    ("name with a leading digit", chunk(craft.string("1a", "x")), "name '1a'"),
    ("name with a space", chunk(craft.string("a b", "x")), "name 'a b'"),
    ("name not ASCII", chunk(craft.string(b"caf\xc3\xa9", "x")), "is not a lowercase letter"),
    ("name repeated", chunk(craft.string("org.x", "1"), craft.string("org.x", "2")), "'org.x' appears twice"),
    ("name repeated by an unknown type", chunk(craft.string("org.x", "1"), craft.entry("org.x", 9, b"??")),
     "'org.x' appears twice"),
    ("string of 4097 bytes", chunk(craft.string("org.x", "s" * 4097)), "a string of 4097 bytes (at most 4096)"),
    ("string not UTF-8", chunk(craft.entry("org.x", 1, b"\xff\xfe")), "'org.x': the string is not UTF-8"),
    ("string with a NUL", chunk(craft.string("org.x", "a\0b")), "'org.x': the string holds a NUL"),
    ("int64 of 4 bytes", chunk(craft.entry("org.x", 2, bytes(4))), "'org.x': a int64 of 4 bytes (8)"),
    ("float64 of 16 bytes", chunk(craft.entry("org.x", 4, bytes(16))), "'org.x': a float64 of 16 bytes (8)"),
    ("int64 array of 12 bytes", chunk(craft.entry("org.x", 3, bytes(12))), "an int64 array of 12 bytes"),
    ("int64 array of 65 elements", chunk(craft.entry("org.x", 3, bytes(520))), "an int64 array of 520 bytes"),
]

# "a well-known name with another type than its row says; a value outside its range; an
# array or image with a part missing, or strides with another count than shape"
WELL_KNOWN_CASES = [
    ("dtype as int64", chunk(craft.int64("dtype", 4), craft.ints("shape", [2])), "'dtype' is a int64, not a string"),
    ("shape as string", chunk(craft.string("dtype", "uint8"), craft.string("shape", "2,3")),
     "'shape' is a string, not a int64 array"),
    ("width as float64", chunk(craft.float64("width", 4.0), *IMAGE[1:]), "'width' is a float64, not a int64"),
    ("content-type as int64", chunk(craft.int64("content-type", 1)), "'content-type' is a int64"),
    ("a well-known name of an unknown type", chunk(craft.entry("stride", 9, bytes(8)), *IMAGE),
     "'stride' has type 9, not int64"),
    ("content-type empty", chunk(craft.string("content-type", "")), "'content-type' is not 1-255 printable ASCII"),
    ("content-type with a tab", chunk(craft.string("content-type", "text/plain;\tx")), "printable ASCII"),
    ("content-type of 256 bytes", chunk(craft.string("content-type", "a/" + "b" * 254)), "printable ASCII"),
    ("content-type not ASCII", chunk(craft.string("content-type", "text/é")), "printable ASCII"),
    ("shape of 33 dimensions", chunk(craft.string("dtype", "uint8"), craft.ints("shape", [1] * 33)),
     "0-32 dimensions, each >= 0"),
    ("shape negative", chunk(craft.string("dtype", "uint8"), craft.ints("shape", [2, -1])), "each >= 0"),
    ("strides negative", chunk(*ARRAY, craft.ints("strides", [12, -4])), "'strides' [12, -4]: each >= 0"),
    ("width 0", chunk(craft.int64("width", 0), *IMAGE[1:]), "'width' is 0 (at least 1)"),
    ("height -1", chunk(IMAGE[0], craft.int64("height", -1), IMAGE[2]), "'height' is -1 (at least 1)"),
    ("stride 0", chunk(*IMAGE, craft.int64("stride", 0)), "'stride' is 0 (at least 1)"),
    ("pixel-format of 3 characters", chunk(*IMAGE[:2], craft.string("pixel-format", "R8 ")), "is not a fourcc"),
    ("pixel-format not ASCII", chunk(*IMAGE[:2], craft.string("pixel-format", "ÄB24")), "is not a fourcc"),
    ("dtype empty", chunk(craft.string("dtype", ""), craft.ints("shape", [1])), "'dtype' is empty"),
    ("dtype without shape", chunk(craft.string("dtype", "uint8")), "'dtype' without 'shape'"),
    ("shape without dtype", chunk(craft.ints("shape", [3])), "'shape' without 'dtype'"),
    ("strides alone", chunk(craft.ints("strides", [1])), "'strides' without 'dtype' and 'shape'"),
    ("strides count", chunk(*ARRAY, craft.ints("strides", [4])), "'strides' has 1 elements and 'shape' 2"),
    ("image without pixel-format", chunk(*IMAGE[:2]), "with width, height and without pixel-format"),
    ("image without width", chunk(*IMAGE[1:]), "and without width"),
    ("stride alone", chunk(craft.int64("stride", 8)), "'stride' without 'width', 'height' and 'pixel-format'"),
]

# "a known dtype: the array's extent fits the payload ... without overflow; a known
# pixel-format: stride >= width x bytes per pixel and (height - 1) x stride + width x
# bytes per pixel <= payload_length (without overflow)"
EXTENT_CASES = [
    ("array past the payload", chunk(*ARRAY, payload=bytes(20)), "spans 24 bytes; the payload has 20"),
    ("strided array past the payload", chunk(*ARRAY, craft.ints("strides", [16, 4])),
     "spans 28 bytes; the payload has 24"),
    ("array past any u64", chunk(craft.string("dtype", "complex128"), craft.ints("shape", [1 << 62, 1 << 62])),
     "the payload has 24"),
    ("a broadcast stride past the payload", chunk(craft.string("dtype", "uint8"), craft.ints("shape", [2]),
                                                  craft.ints("strides", [(1 << 63) - 1])), "the payload has 24"),
    ("stride below a row", chunk(*IMAGE, craft.int64("stride", 15)), "'stride' 15 is below width 4 x 4 bytes"),
    ("image past the payload", chunk(*IMAGE), "spans 32 bytes; the payload has 24"),
    ("image past any u64", chunk(craft.int64("width", 1 << 62), craft.int64("height", 1 << 62),
                                 craft.string("pixel-format", "R8  ")), "the payload has 24"),
]


@pytest.mark.parametrize("what,second,message", BLOCK_CASES + WELL_KNOWN_CASES + EXTENT_CASES,
                         ids=[c[0] for c in BLOCK_CASES + WELL_KNOWN_CASES + EXTENT_CASES])
def test_a_record_whose_attributes_break_a_check_is_refused(what, second, message):
    assert message in refused(second), what


def test_the_fault_is_located_in_the_segment():
    # The third entry's name is bad: `where` is that entry's byte in the segment.
    second = chunk(craft.string("dtype", "int8"), craft.ints("shape", [1]), craft.string("Bad", "x"))
    error = read_all(segment_with(second))
    entry = R2 + 72 + 8 + 16 + 24             # block at +72: checksum, dtype (16), shape (24)
    assert isinstance(error, BadAttributes) and error.where == entry, repr(error)
    assert ("record at offset %d: attributes: entry at +48" % R2) in str(error) and "byte %d" % entry in str(error)


def test_a_cursor_and_latest_refuse_the_record_too():
    data = segment_with(chunk(*ARRAY, payload=bytes(20)))
    fd = craft.memfd(data)
    try:
        with shmbus.Segment(fd) as segment:
            from shmbus.cursor import Cursor
            cursor = Cursor(segment, "oldest")
            assert cursor.next().sequence == 1
            with pytest.raises(BadAttributes):
                cursor.next()
            with pytest.raises(BadAttributes):
                segment.latest("t")
    finally:
        os.close(fd)


def accepted(second):
    result = read_all(segment_with(second))
    assert isinstance(result, list), repr(result)
    return result[1][1]


def test_unknown_entry_types_are_skipped_and_unknown_names_kept_in_order():
    attributes = accepted(chunk(craft.string("content-type", "application/x-array"), craft.entry("org.new", 9, b"123456789"),
                                craft.int64("org.example.exposure-us", 1500), craft.entry("org.vec", 200, bytes(40)),
                                craft.float64("org.example.gain", -2.5), *ARRAY))
    assert list(attributes.items()) == [("content-type", "application/x-array"), ("org.example.exposure-us", 1500),
                                        ("org.example.gain", -2.5), ("dtype", "float32"), ("shape", (2, 3))]


def test_an_empty_block_and_edge_values_are_accepted():
    assert accepted(craft.record(2, "t", b"y", attributes=craft.block())) == {}
    assert accepted(chunk(craft.string("org.x", ""), craft.ints("org.e", []), craft.float64("org.nan", math.nan),
                          craft.string("org.long", "s" * 4096), craft.ints("org.many", list(range(64))),
                          craft.string("content-type", "text/plain; charset=utf-8"), payload=b""))["org.many"] == \
        tuple(range(64))
    # Exactly the payload; a zero dimension spans nothing; a scalar spans one element.
    assert accepted(chunk(*ARRAY))["shape"] == (2, 3)
    assert accepted(chunk(craft.string("dtype", "float64"), craft.ints("shape", [0, 1 << 40]), payload=b""))
    assert accepted(chunk(craft.string("dtype", "float64"), craft.ints("shape", []), payload=bytes(8)))
    assert accepted(chunk(*IMAGE, craft.int64("stride", 16), payload=bytes(32)))["stride"] == 16


def test_an_unknown_dtype_or_pixel_format_is_accepted_but_not_viewed():
    fd = craft.memfd(segment_with(chunk(craft.string("dtype", "float8_e4m3"), craft.ints("shape", [1 << 40]),
                                        craft.int64("width", 1 << 40), craft.int64("height", 2),
                                        craft.string("pixel-format", "NV12"))))
    try:
        with shmbus.Segment(fd) as segment:
            second = list(segment.records())[1]
            assert second.array_layout.dtype == "float8_e4m3" and second.array_layout.itemsize is None
            assert second.image_layout.pixel_format == "NV12" and second.image_layout.bytes_per_pixel is None
            pytest.importorskip("numpy")
            with pytest.raises(NotAnArray, match="dtype 'float8_e4m3' is not one this reader knows"):
                second.array()
    finally:
        os.close(fd)
    fd = craft.memfd(segment_with(chunk(craft.int64("width", 1 << 40), craft.int64("height", 2),
                                        craft.string("pixel-format", "NV12"))))
    try:
        with shmbus.Segment(fd) as segment:
            with pytest.raises(NotAnArray, match="pixel format 'NV12' is not a packed format"):
                list(segment.records())[1].array()
    finally:
        os.close(fd)


def test_a_block_changed_under_the_reader_is_read_once():
    """The block is copied before it is checked: flipping a byte of a valid record's
    block in the file afterwards changes nothing already returned."""
    fd = craft.memfd(segment_with(chunk(*ARRAY)), seals=0)
    try:
        segment = shmbus.Segment(fd, require_seals=False)
        second = list(segment.records())[1]
        os.pwrite(fd, b"X", R2 + 72 + 8 + 4)          # the dtype entry's name
        assert dict(second.attributes) == {"dtype": "float32", "shape": (2, 3)}
        with pytest.raises(BadAttributes, match="checksum mismatch"):
            list(segment.records())
        segment.close()
    finally:
        os.close(fd)


def test_random_corruption_of_attributes_raises_only_segment_errors():
    import random
    good = segment_with(chunk(craft.string("content-type", "image/x-raw"), *ARRAY, *IMAGE[:2],
                              craft.string("pixel-format", "R8  "), craft.ints("strides", [12, 4]), payload=bytes(24)))
    assert isinstance(read_all(good), list)
    rng = random.Random(54)
    caught = 0
    for trial in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            spot = R2 + 54 + rng.randrange(2) if rng.random() < 0.1 else R2 + 72 + rng.randrange(184)
            data[spot] ^= 1 << rng.randrange(8)
        # Fix both checksums, so that the parser itself meets the damage.
        alen = struct.unpack_from("<H", data, R2 + 54)[0]
        h = bytearray(data[R2:R2 + 56])
        h[4:8] = bytes(4)
        struct.pack_into("<Q", data, R2 + 56, shmbus.format.mix64(b"t", shmbus.format.mix64(bytes(h), shmbus.format.RECORD_SEED)))
        if alen >= 8 and R2 + 72 + alen <= len(data):
            body = bytes(data[R2 + 80:R2 + 72 + alen])
            struct.pack_into("<Q", data, R2 + 72, shmbus.format.mix64(body, 0x53484D4255534154))
        result = read_all(data)
        assert isinstance(result, (list, shmbus.SegmentError)), "trial %d: %r" % (trial, result)
        caught += not isinstance(result, list)
    assert caught > 100
