"""Attributes written by the package's writer (docs/FORMAT.md's "A real record with
attributes", byte for byte), the encoder's rules, and ``Chunk.array()`` and DLPack:
the right dtype, shape and strides, over the mapping, nothing copied."""
import math
import os
import re
import struct
import tracemalloc

import pytest

import shmbus
from shmbus import InvalidArgument, NotAnArray
from shmbus import attributes as A
from shmbus.writer import ChannelWriter, SegmentWriter, attributes_block

from conftest import REPO

numpy = pytest.importorskip("numpy")


def document_vector():
    """The hex dump after FORMAT.md's attributes-vector marker, as bytes (offset: words)."""
    with open(os.path.join(REPO, "docs", "FORMAT.md")) as f:
        text = f.read()
    block = text.split("<!-- attributes-vector", 1)[1].split("```", 2)[1]
    out = bytearray()
    for line in block.strip().splitlines():
        offset, words = line.split(":", 1)
        assert int(offset) == len(out), line
        out += bytes.fromhex("".join(words.split()))
    return bytes(out)


VECTOR_ATTRIBUTES = {"content-type": "application/x-array", "dtype": "float32", "shape": [2, 3]}


def test_the_writer_reproduces_the_documents_record_with_attributes():
    vector = document_vector()
    assert len(vector) == 168           # header, key, padding to 72, the 96-byte block
    payload = struct.pack("<6f", 0.5, 1.5, 2.5, -1.0, 1e9, math.pi)
    segment = SegmentWriter("py/attributes-vector", 8192, 1, 6)
    try:
        block = attributes_block(VECTOR_ATTRIBUTES, len(payload))
        offset, length, payload_at = segment.write_record(7, b"t", len(payload), 1767225600000000000, 0, block)
        segment.map[payload_at:payload_at + len(payload)] = payload
        segment.commit(offset + length, 7, 1, length)
        assert (offset, length, payload_at - offset) == (4096, 256, 192)
        written = bytes(segment.map[offset:offset + length])
        assert written == vector + bytes(192 - 168) + payload + bytes(256 - 216)
        with segment.reader() as reader:
            (chunk,) = list(reader.records())
            assert (chunk.sequence, chunk.key, chunk.timestamp, bytes(chunk.payload)) == (7, "t", 1767225600000000000,
                                                                                          payload)
            assert list(chunk.attributes.items()) == [("content-type", "application/x-array"), ("dtype", "float32"),
                                                      ("shape", (2, 3))]
            assert chunk.content_type == "application/x-array"
            array = chunk.array()
            assert array.dtype == numpy.float32 and array.shape == (2, 3)
            assert array.tolist() == numpy.frombuffer(payload, "<f4").reshape(2, 3).tolist()
            del array, chunk
    finally:
        segment.close()


def one_chunk(payload, attributes, key="k"):
    """A segment holding one chunk written by the channel writer: (writer, chunk)."""
    writer = ChannelWriter("py/attributes", capacity=max(1 << 16, len(payload) + (1 << 14)))
    writer.append(payload, key=key, attributes=attributes)
    reader = writer.current.reader()
    return writer, next(reader.records())


def test_values_are_typed_by_their_python_type_and_kept_in_order():
    attributes = {"org.example.z": "zeta", "org.example.count": 3, "org.example.dims": (1, -2, 3),
                  "org.example.gain": 0.25, "org.example.np": numpy.int16(7), "org.example.f": numpy.float32(1.5),
                  "org.example.list": [numpy.int64(4)], "org.example.empty": [], "a": "first of its kind"}
    writer, chunk = one_chunk(b"payload", attributes)
    try:
        got = chunk.attributes
        assert list(got) == list(attributes)
        assert got["org.example.z"] == "zeta" and got["org.example.count"] == 3 and type(got["org.example.count"]) is int
        assert got["org.example.dims"] == (1, -2, 3) and got["org.example.empty"] == ()
        assert got["org.example.gain"] == 0.25 and got["org.example.f"] == 1.5 and type(got["org.example.f"]) is float
        assert got["org.example.np"] == 7 and got["org.example.list"] == (4,)
        with pytest.raises(TypeError):
            got["a"] = "b"                       # read-only
        assert chunk.array_layout is None and chunk.image_layout is None and chunk.content_type is None
        with pytest.raises(NotAnArray, match="has neither array"):
            chunk.array()
        with pytest.raises(NotAnArray, match="has neither array"):
            numpy.from_dlpack(chunk)
    finally:
        writer.close()


def test_a_chunk_without_attributes_has_an_empty_mapping_and_the_old_layout():
    writer, chunk = one_chunk(b"plain", None)
    try:
        assert dict(chunk.attributes) == {} and chunk.payload_offset - chunk.offset == 128   # align64(64 + 1)
        assert struct.unpack_from("<H", writer.current.map, chunk.offset + 54)[0] == 0
    finally:
        writer.close()
    writer, chunk = one_chunk(b"plain", {})
    writer.close()
    assert dict(chunk.attributes) == {}


BAD_WRITES = [
    ({"Dtype": "x"}, "name 'Dtype'"),
    ({"": "x"}, "a name of 0 bytes"),
    ({"a" * 64: 1}, "a name of 64 bytes"),
    ({"café": 1}, "not ASCII"),
    ({"org.flag": True}, "a bool is neither"),
    ({"org.big": 1 << 63}, "outside int64"),
    ({"org.list": [1, 2.5]}, "an array holds ints only"),
    ({"org.list": list(range(65))}, "at most 64 elements"),
    ({"org.text": "x" * 4097}, "at most 4096 UTF-8 bytes"),
    ({"org.text": "a\0"}, "without NUL"),
    ({"org.raw": b"bytes"}, "bytes is not a str, int"),
    ({"dtype": 4, "shape": [1]}, "'dtype' is a int64, not a string"),
    ({"width": 640.0, "height": 480, "pixel-format": "AB24"}, "'width' is a float64"),
    ({"dtype": "float32"}, "'dtype' without 'shape'"),
    ({"width": 2, "height": 2}, "without pixel-format"),
    ({"content-type": ""}, "'content-type' is not 1-255"),
    ({"dtype": "float32", "shape": [2, 3]}, "spans 24 bytes; the payload has 8"),
    ({"width": 4, "height": 4, "pixel-format": "AB24"}, "the payload has 8"),
    ({"org.x%d" % i: "y" * 4000 for i in range(17)}, "a block holds at most 65528"),
    ({"dtype": "float64", "shape": [0, 1 << 40, 1 << 40]}, "row-major strides of [0, 1099511627776, 1099511627776] overflow"),
]


@pytest.mark.parametrize("attributes,message", BAD_WRITES, ids=[m for _, m in BAD_WRITES])
def test_the_writer_refuses_what_readers_would_refuse(attributes, message):
    writer = ChannelWriter("py/attributes", capacity=1 << 20)
    try:
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            writer.reserve(8, key="k", attributes=attributes)
        # Nothing was reserved: the next chunk goes through.
        writer.append(b"12345678", key="k", attributes={"org.ok": 1})
        assert next(writer.current.reader().records()).attributes["org.ok"] == 1
    finally:
        writer.close()


def test_attributes_survive_garbage_collection_byte_for_byte():
    writer = ChannelWriter("py/attributes", capacity=3 * 4096)
    try:
        for i in range(40):
            writer.append(bytes([i]) * 600, key="k%d" % (i % 2),
                          attributes={"content-type": "application/octet-stream", "org.i": i})
        assert writer.current.generation > 3
        got = {c.key: dict(c.attributes) for c in writer.current.reader().chunks()}
        assert got == {"k0": {"content-type": "application/octet-stream", "org.i": 38},
                       "k1": {"content-type": "application/octet-stream", "org.i": 39}}
    finally:
        writer.close()


# MARK: arrays

DTYPE_ROWS = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
              "float64", "complex64", "complex128"]


@pytest.mark.parametrize("dtype", DTYPE_ROWS)
def test_array_has_the_documents_dtype_and_shape(dtype):
    source = (numpy.arange(24) % 2 if dtype == "bool" else numpy.arange(24) - 5).astype(numpy.dtype(dtype).newbyteorder("<"))
    expected = source.reshape(2, 3, 4)
    writer, chunk = one_chunk(source.tobytes(), {"dtype": dtype, "shape": [2, 3, 4]})
    try:
        assert A.DTYPES[dtype] == source.itemsize
        array = chunk.array()
        assert array.dtype == numpy.dtype(dtype) and array.shape == (2, 3, 4) and array.strides == expected.strides
        assert (array == expected).all() and not array.flags.writeable
    finally:
        writer.close()


def test_array_honours_strides_and_scalars_and_empty_arrays():
    base = numpy.arange(12, dtype="<i4").reshape(3, 4)
    writer, chunk = one_chunk(base.tobytes(), {"dtype": "int32", "shape": [4, 3], "strides": [4, 16]})
    try:
        assert (chunk.array() == base.T).all() and chunk.array().strides == (4, 16)
    finally:
        writer.close()
    writer, chunk = one_chunk(struct.pack("<d", 2.5), {"dtype": "float64", "shape": []})
    try:
        assert chunk.array().shape == () and float(chunk.array()) == 2.5
    finally:
        writer.close()
    writer, chunk = one_chunk(b"", {"dtype": "float64", "shape": [0, 5]})
    try:
        assert chunk.array().shape == (0, 5)
    finally:
        writer.close()
    writer, chunk = one_chunk(b"\x07", {"dtype": "uint8", "shape": [3, 2], "strides": [0, 0]})
    try:
        assert chunk.array().tolist() == [[7, 7]] * 3          # a broadcast: one byte seen six times
    finally:
        writer.close()


IMAGE_ROWS = [("AB24", (2, 3, 4), "u1"), ("XR24", (2, 3, 4), "u1"), ("RG24", (2, 3, 3), "u1"), ("BG24", (2, 3, 3), "u1"),
              ("R8  ", (2, 3), "u1"), ("R16 ", (2, 3), "<u2"), ("GR88", (2, 3, 2), "u1"), ("YUYV", (2, 3, 2), "u1"),
              ("UYVY", (2, 3, 2), "u1")]


@pytest.mark.parametrize("fourcc,shape,dtype", IMAGE_ROWS, ids=[r[0].strip() for r in IMAGE_ROWS])
def test_an_image_is_viewed_as_rows_of_pixels_with_its_stride(fourcc, shape, dtype):
    bpp = A.PIXEL_FORMATS[fourcc]
    stride = 3 * bpp + 5                         # rows padded, as a camera's often are
    payload = bytes(range(stride + 3 * bpp))     # the last row needs no padding
    writer, chunk = one_chunk(payload, {"width": 3, "height": 2, "stride": stride, "pixel-format": fourcc})
    try:
        array = chunk.array()
        assert array.shape == shape and array.dtype == numpy.dtype(dtype) and array.strides[0] == stride
        rows = [numpy.frombuffer(payload[r * stride:r * stride + 3 * bpp], dtype).reshape(shape[1:]) for r in range(2)]
        assert (array[0] == rows[0]).all() and (array[1] == rows[1]).all()
    finally:
        writer.close()


def test_array_attributes_win_over_the_image_and_bfloat16_is_explained():
    payload = bytes(range(16))
    writer, chunk = one_chunk(payload, {"width": 2, "height": 2, "pixel-format": "AB24", "dtype": "uint32",
                                        "shape": [4]})
    try:
        assert chunk.array().shape == (4,) and chunk.array().dtype == numpy.uint32
        assert chunk.image_layout.stride == 8 and chunk.image_layout.bytes_per_pixel == 4
    finally:
        writer.close()
    writer, chunk = one_chunk(bytes(8), {"dtype": "bfloat16", "shape": [4]})
    try:
        try:
            import ml_dtypes
        except ImportError:
            with pytest.raises(NotAnArray, match="install ml_dtypes"):
                chunk.array()
        else:
            assert chunk.array().dtype == numpy.dtype(ml_dtypes.bfloat16)
    finally:
        writer.close()


def whole_mapping(chunk):
    return numpy.frombuffer(chunk.segment._map, dtype=numpy.uint8)


def test_array_and_from_dlpack_copy_nothing():
    size = 16 << 20
    writer = ChannelWriter("py/attributes", capacity=size + (1 << 16))
    try:
        view, _ = writer.reserve(size, key="big", attributes={"dtype": "float32", "shape": [1024, 4096]})
        numpy.frombuffer(view, "<f4")[:] = numpy.arange(1024 * 4096, dtype="<f4")
        view.release()
        writer.commit()
        segment = writer.current.reader()
        chunk = segment.latest("big")
        whole = whole_mapping(chunk)
        tracemalloc.start()
        array = chunk.array()
        imported = numpy.from_dlpack(chunk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * 1024, "a 16 MiB view allocated %d bytes" % peak
        for a in (array, imported):
            # The payload's own address in the mapping: no copy, and no write access.
            assert a.ctypes.data == whole.ctypes.data + chunk.payload_offset
            assert numpy.shares_memory(a, whole) and not a.flags.writeable and not a.flags.owndata
            assert a.shape == (1024, 4096) and a.dtype == numpy.float32 and a[1023, 4095] == 1024 * 4096 - 1
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 1
        assert chunk.__dlpack_device__() == (1, 0)
        # The unversioned DLPack (0.x) cannot say read-only: numpy refuses to export.
        with pytest.raises(BufferError, match="readonly"):
            chunk.__dlpack__()
        # An array keeps the mapping alive after the segment is closed.
        del chunk
        segment.close()
        assert imported[0, 1] == 1.0
    finally:
        writer.close()


def test_the_tables_are_the_documents():
    """The dtype, pixel-format and well-known tables of FORMAT.md's "Well-known
    attributes", parsed from the document, are the ones the package uses."""
    with open(os.path.join(REPO, "docs", "FORMAT.md")) as f:
        text = f.read().split("### Well-known attributes", 1)[1].split("### A real record with attributes", 1)[0]
    types = {"string": A.STRING, "int64": A.INT64, "int64 array": A.INT64_ARRAY, "float64": A.FLOAT64}
    well_known, dtypes, formats = {}, {}, {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in types and cells[0].startswith("`"):
            well_known[cells[0].strip("`")] = types[cells[1]]
        elif len(cells) == 5 and cells[0].startswith("`"):            # dtype | bytes | | dtype | bytes
            for name, size in ((cells[0], cells[1]), (cells[3], cells[4])):
                if name:
                    dtypes[name.strip("`")] = int(size)
        elif len(cells) == 4 and cells[0].startswith("`") and cells[2].isdigit():
            formats[cells[0][1:-1]] = int(cells[2])                     # keeps the fourcc's spaces
    assert well_known == A.WELL_KNOWN
    assert dtypes == A.DTYPES
    assert formats == A.PIXEL_FORMATS
    from shmbus.arrays import NUMPY_DTYPES, PIXEL_VIEWS
    assert set(NUMPY_DTYPES) | {"bfloat16"} == set(A.DTYPES)
    assert all(numpy.dtype(NUMPY_DTYPES[n]).itemsize == A.DTYPES[n] for n in NUMPY_DTYPES)
    assert set(PIXEL_VIEWS) == set(A.PIXEL_FORMATS)
    assert all(numpy.dtype(d).itemsize * (c or 1) == A.PIXEL_FORMATS[f] for f, (d, c) in PIXEL_VIEWS.items())
