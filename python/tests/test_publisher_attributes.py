"""Attributes across processes: a Python Publisher's chunks with attributes read by
shmbus.latest, the Python Subscriber (through collections) and the Swift command line,
against the real registry on a private bus."""
import os

import pytest

import shmbus
from shmbus import InvalidArgument

numpy = pytest.importorskip("numpy")


def test_latest_and_the_subscriber_see_a_python_publishers_attributes(peers, channel):
    frame = numpy.arange(48 * 64 * 4, dtype=numpy.uint8).reshape(48, 64, 4)
    image = {"content-type": "image/x-raw", "width": 64, "height": 48, "stride": 256, "pixel-format": "AB24"}
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        subscriber = shmbus.Subscriber(channel, bus=peers.address, start="oldest", wait="futex")
        try:
            for i in range(30):       # 12 KiB frames in 64 KiB segments: collected every few frames
                view = publisher.reserve(frame.nbytes, key="frame", attributes=dict(image, **{"org.example.n": i}))
                numpy.frombuffer(view, numpy.uint8)[:] = (frame + i).ravel()
                view.release()
                publisher.commit()
                event = subscriber.next_event(timeout=10)
                assert isinstance(event, shmbus.Chunk), event
                assert event.attributes == dict(image, **{"org.example.n": i})
                pixels = event.array()
                assert pixels.shape == (48, 64, 4) and (pixels == frame + i).all()
            assert subscriber.statistics["segments_followed"] >= 3
        finally:
            subscriber.close()
        publisher.publish(numpy.eye(3, dtype="<f8").tobytes(), key="matrix",
                          attributes={"dtype": "float64", "shape": (3, 3), "content-type": "application/x-array"})
        publisher.flush()
        chunk = shmbus.latest(channel, "matrix", bus=peers.address)
        assert chunk.content_type == "application/x-array" and (chunk.array() == numpy.eye(3)).all()
        assert chunk.attributes["shape"] == (3, 3)
        assert shmbus.latest(channel, "frame", bus=peers.address).attributes["org.example.n"] == 29


def test_shmbus_cat_reads_the_payload_after_a_long_block(peers, channel, tmp):
    """`shmbus cat` takes the payload at payload_offset, past a 368-byte block
    (written before the Swift side read attributes, this showed the compatible
    extension at work; the cross-language tests check what it now shows of them)."""
    data = os.urandom(100 * 1024 + 3)
    with shmbus.Publisher(channel, bus=peers.address, capacity=1 << 20) as publisher:
        published = publisher.publish(data, key="blob", attributes={"content-type": "application/octet-stream",
                                                                    "org.example.note": "x" * 300})
        assert published.offset % 64 == 0
        publisher.flush()
        out = os.path.join(tmp, "out")
        cat = peers.shmbus("cat", "--channel", channel, "--key", "blob", "--output", out)
        assert cat.returncode == 0, cat.stderr.decode()
        with open(out, "rb") as f:
            assert f.read() == data


def test_attributes_a_reader_would_refuse_are_not_published(peers, channel):
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        with pytest.raises(InvalidArgument, match="spans 24 bytes; the payload has 16"):
            publisher.publish(bytes(16), key="t", attributes={"dtype": "float32", "shape": [2, 3]})
        with pytest.raises(InvalidArgument, match="'pixel-format' without|without pixel-format"):
            publisher.publish(bytes(16), key="t", attributes={"width": 2, "height": 2})
        assert publisher.last_sequence == 0
        assert publisher.publish(bytes(24), key="t", attributes={"dtype": "float32", "shape": [2, 3]}).sequence == 1
