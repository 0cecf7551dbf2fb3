"""Attributes between the languages: the Swift command line's `publish --attribute`
read from Python (the record's attributes, the array, LookupChunk's info), and a
Python publisher's attributes shown by `shmbus cat --info` and `shmbus subscribe
--json`, against the real registry on a private bus."""
import json
import math
import struct
import subprocess

import pytest

import shmbus
from shmbus.registry import Registry

from conftest import binary

numpy = pytest.importorskip("numpy")

SWIFT_OPTIONS = ["--attribute", "content-type=application/x-array", "--attribute", "dtype=float32",
                 "--attribute", "shape:ints=2,3", "--attribute", "org.example.gain:float=nan",
                 "--attribute", "org.example.count:int=-7", "--attribute", "org.example.empty:ints=",
                 "--attribute", "org.example.limit:float=-inf"]
SWIFT_ORDER = ["content-type", "dtype", "shape", "org.example.gain", "org.example.count", "org.example.empty",
               "org.example.limit"]


def same(a, b):
    """Attribute values equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_the_swift_command_lines_attributes_are_read_from_python(peers, channel):
    matrix = numpy.arange(6, dtype="<f4").reshape(2, 3) / 4
    done = peers.shmbus("publish", "--channel", channel, "--key", "m", "--persistent", *SWIFT_OPTIONS, "-",
                        input=matrix.tobytes())
    assert done.returncode == 0, done.stderr.decode()
    chunk = shmbus.latest(channel, "m", bus=peers.address)
    assert list(chunk.attributes) == SWIFT_ORDER                      # the block's order, as given
    expected = {"content-type": "application/x-array", "dtype": "float32", "shape": (2, 3),
                "org.example.gain": math.nan, "org.example.count": -7, "org.example.empty": (),
                "org.example.limit": -math.inf}
    assert all(same(chunk.attributes[n], v) for n, v in expected.items()), dict(chunk.attributes)
    array = chunk.array()
    assert array.dtype == numpy.float32 and array.shape == (2, 3) and (array == matrix).all()
    whole = numpy.frombuffer(chunk.segment._map, numpy.uint8)
    assert array.ctypes.data == whole.ctypes.data + chunk.payload_offset and not array.flags.writeable
    from_dlpack = numpy.from_dlpack(chunk)
    assert numpy.shares_memory(from_dlpack, whole) and (from_dlpack == matrix).all()
    # The subscriber reads the same record.
    with shmbus.Subscriber(channel, bus=peers.address, start="oldest", wait="poll") as subscriber:
        event = subscriber.next_event(timeout=10)
        assert event.sequence == chunk.sequence and list(event.attributes) == SWIFT_ORDER
    # LookupChunk says the same before anything is mapped (names sorted: a{sv} has no order).
    found = shmbus.lookup_chunk(channel, "m", bus=peers.address)
    assert (found.segment, found.offset, found.length, found.sequence) == (
        chunk.segment.name, chunk.payload_offset, 24, chunk.sequence)
    assert found.info["timestamp"] == chunk.timestamp and found.info["expiry"] == 0
    assert list(found.info["attributes"]) == sorted(SWIFT_ORDER)
    assert all(same(found.info["attributes"][n], v) for n, v in expected.items())
    assert found.info["attributes"].array.shape == (2, 3)


def test_lookup_chunk_of_a_chunk_without_attributes_and_of_none(peers, channel):
    done = peers.shmbus("publish", "--channel", channel, "--key", "plain", "--persistent", "-", input=b"plain")
    assert done.returncode == 0, done.stderr.decode()
    with Registry(peers.address) as registry:
        found = registry.lookup_chunk(channel, "plain")
        assert found.length == 5 and dict(found.info["attributes"]) == {}
        with pytest.raises(shmbus.NotFound):
            registry.lookup_chunk(channel, "missing")
    out = subprocess.run(["busctl", "--address=" + peers.address, "introspect", "org.shmbus.Registry1",
                          "/org/shmbus/Registry1", "org.shmbus.Registry1"], capture_output=True, text=True, timeout=30)
    assert any(line.split()[:4] == [".LookupChunk", "method", "ss", "sttta{sv}"] for line in out.stdout.splitlines())


PYTHON_ATTRIBUTES = {"content-type": "image/x-raw", "width": 4, "height": 2, "stride": 20, "pixel-format": "XR24",
                     "org.example.exposure-us": 1500, "org.example.gain": math.inf, "org.example.roi": [0, 0, 4, 2]}
JSON_ATTRIBUTES = {"content-type": "image/x-raw", "width": 4, "height": 2, "stride": 20, "pixel-format": "XR24",
                   "org.example.exposure-us": 1500, "org.example.gain": "inf", "org.example.roi": [0, 0, 4, 2]}


def test_swift_shows_a_python_publishers_attributes(peers, channel):
    payload = bytes(range(36))
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        published = publisher.publish(payload, key="image", attributes=PYTHON_ATTRIBUTES)
        publisher.flush()
        info = peers.shmbus("cat", "--channel", channel, "--key", "image", "--info", "--json")
        assert info.returncode == 0, info.stderr.decode()
        shown = json.loads(info.stdout)
        assert shown["attributes"] == JSON_ATTRIBUTES and shown["sequence"] == published.sequence
        assert shown["offset"] == published.offset and shown["length"] == len(payload)
        table = peers.shmbus("cat", "--channel", channel, "--key", "image", "--info")
        assert table.returncode == 0, table.stderr.decode()
        rows = [line.split(None, 1) for line in table.stdout.decode().splitlines()]
        # The table keeps the block's order.
        assert [r[0] for r in rows[-len(PYTHON_ATTRIBUTES):]] == list(PYTHON_ATTRIBUTES)
        assert ["pixel-format", '"XR24" (XRGB8888)'] in rows
        subscribe = subprocess.run([binary("shmbus"), "subscribe", "--channel", channel, "--from", "oldest", "--json",
                                    "--count", "1", "--bus", peers.address], capture_output=True, timeout=60)
        assert subscribe.returncode == 0, subscribe.stderr.decode()
        event = json.loads(subscribe.stdout.decode().splitlines()[0])
        assert event["event"] == "chunk" and event["attributes"] == JSON_ATTRIBUTES
        found = shmbus.lookup_chunk(channel, "image", bus=peers.address)
        assert found.info["attributes"].image.stride == 20 and found.info["attributes"]["org.example.roi"] == (0, 0, 4, 2)


def test_the_swift_reader_refuses_what_the_python_reader_refuses(peers, channel):
    """The registry (Swift) validates records it is asked about: a chunk whose block a
    Python writer could not write (made here by hand in the writer's own segment,
    behind its back) is refused by both."""
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        publisher.publish(bytes(24), key="t", attributes={"dtype": "float32", "shape": [2, 3]})
        publisher.flush()
        segment = publisher.writer.current
        # Make the shape [2, 4] (32 bytes, past the 24-byte payload), checksum fixed.
        at = 4096 + 72
        block_length = struct.unpack_from("<H", segment.map, 4096 + 54)[0]
        shape_value = at + 8 + 16 + 9 + 8
        struct.pack_into("<q", segment.map, shape_value, 4)
        body = bytes(segment.map[at + 8:at + block_length])
        struct.pack_into("<Q", segment.map, at, shmbus.format.mix64(body, shmbus.attributes.SEED))
        with pytest.raises(shmbus.BadAttributes, match="spans 32 bytes; the payload has 24"):
            list(segment.reader().records())
        cat = peers.shmbus("cat", "--channel", channel, "--key", "t", "--info", "--json")
        assert cat.returncode != 0 and b"payload has 24" in cat.stderr, (cat.returncode, cat.stderr)


def test_swift_reads_the_documents_record_as_the_python_writer_wrote_it(peers, channel, tmp):
    """FORMAT.md's "A real record with attributes" (sequence 7, key "t", its timestamp),
    written by the Python writer into a registered segment: the Swift reader (`shmbus
    cat`, the registry's LookupChunk) reads the same record back."""
    from test_attributes import VECTOR_ATTRIBUTES, document_vector
    from shmbus.writer import attributes_block
    payload = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        segment = publisher.writer.current
        block = attributes_block(VECTOR_ATTRIBUTES, len(payload))
        offset, length, payload_at = segment.write_record(7, b"t", len(payload), 1767225600000000000, 0, block)
        segment.map[payload_at:payload_at + len(payload)] = payload
        segment.commit(offset + length, 7, 1, length)
        assert bytes(segment.map[offset:offset + 168]) == document_vector()
        info = peers.shmbus("cat", "--channel", channel, "--key", "t", "--info", "--json")
        assert info.returncode == 0, info.stderr.decode()
        shown = json.loads(info.stdout)
        assert (shown["sequence"], shown["timestamp"], shown["offset"], shown["length"]) == (
            7, 1767225600000000000, payload_at, 24)
        assert shown["attributes"] == {"content-type": "application/x-array", "dtype": "float32", "shape": [2, 3]}
        cat = peers.shmbus("cat", "--channel", channel, "--key", "t")
        assert cat.returncode == 0 and cat.stdout == payload, cat.stderr.decode()
        found = shmbus.lookup_chunk(channel, "t", bus=peers.address)
        assert found.sequence == 7 and found.info["attributes"]["shape"] == (2, 3)
