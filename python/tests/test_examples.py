"""The examples in examples/python run by Debian's /usr/bin/python3 (which has
python3-dbus, and not this package installed: they find it in the checkout) against a
Swift publisher."""
import hashlib
import json
import os
import subprocess
import time

from conftest import REPO
from payloads import expected
from shmbus.registry import Registry

EXAMPLES = os.path.join(REPO, "examples", "python")


def test_the_subscriber_example_prints_every_chunk_through_collections(peers, channel):
    """`shmbus publish --lines` in 16 KiB segments, fed by the test: the first line, then,
    once the example printed it, 199 more, 2 ms apart (collected every few dozen)."""
    from conftest import binary
    lines = [("line %d " % i).encode() + bytes([97 + i % 26]) * (i * 13 % 700) for i in range(200)]
    publisher = peers.start([binary("shmbus"), "publish", "--channel", channel, "--lines", "--capacity", "16KiB",
                             "--bus", peers.address])
    publisher.stdin.write(lines[0] + b"\n")
    publisher.stdin.flush()
    example = peers.start(["/usr/bin/python3", os.path.join(EXAMPLES, "subscriber.py"), channel, "--bus", peers.address,
                           "--from", "1", "--until-publisher-leaves"], stdin=subprocess.DEVNULL)
    first = example.stdout.readline().decode()
    for line in lines[1:]:
        publisher.stdin.write(line + b"\n")
        publisher.stdin.flush()
        time.sleep(0.002)
    publisher.stdin.close()             # the publisher leaves; the example then ends
    assert publisher.wait(timeout=30) == 0
    out, err = example.communicate(timeout=60)
    assert example.returncode == 0, err.decode()
    printed = [first.rstrip("\n")] + out.decode().splitlines()
    assert printed[-1].startswith("publisher :"), printed[-3:]
    # Every line printed is the line of that sequence; a gap (only if the example fell
    # more than a collection behind on a loaded machine) says exactly what it missed.
    next_sequence = 1
    for out_line in printed[:-1]:
        words = out_line.split()
        if out_line.startswith("gap: "):
            assert int(words[-1]) == next_sequence - 1
            next_sequence += int(words[2])
            continue
        line = lines[next_sequence - 1]
        assert out_line == "sequence %d key - length %d sha256 %s" % (next_sequence, len(line),
                                                                      hashlib.sha256(line).hexdigest())
        next_sequence += 1
    assert next_sequence == len(lines) + 1
    assert sum(l.startswith("sequence ") for l in printed) >= len(lines) // 2


def test_the_segment_example_lists_a_swift_segment(peers, channel):
    peer = peers.test_peer("publish", channel, 30, 200, 64 * 1024)
    assert peer.stdout.readline().startswith(b"ready")
    assert peer.stdout.readline().startswith(b"published 30")
    with Registry(peers.address) as registry:
        current, _ = registry.current_segment(channel)
        opened = registry.open_segment(current)
    try:
        run = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "shmbus_segment.py"), str(opened.fd)],
                             pass_fds=[opened.fd], capture_output=True, timeout=60)
    finally:
        os.close(opened.fd)
        if opened.doorbell is not None:
            os.close(opened.doorbell)
    assert run.returncode == 0, run.stderr.decode()
    listed = json.loads(run.stdout)
    assert listed["segment"] == current and listed["channel"] == channel
    assert [r["sequence"] for r in listed["records"]] == list(range(1, 31))
    assert all(r["sha256"] == hashlib.sha256(expected(r["sequence"], 200)).hexdigest() for r in listed["records"])
    bad = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "shmbus_segment.py"), "/etc/hostname"],
                         capture_output=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.decode().startswith("shmbus_segment.py: NotSealed: ")


CAMERA = {"content-type": "image/x-raw", "width": 640, "height": 480, "stride": 2560, "pixel-format": "AB24"}


def camera_red_sum(index):
    """The red channel's sum in the camera publisher's frame `index`
    (examples/camera-publisher: pixel i is (i + 3 index) & 0xFF, pixel 0 the index)."""
    import numpy
    red = (numpy.arange(640 * 480, dtype=numpy.uint64) + 3 * index) & 0xFF
    return int(red[1:].sum()) + (index & 0xFF)


def run_camera_example(peers, publish_frames, frames=20):
    """The example (Debian's python3 can lack numpy: the venv's interpreter runs it)
    beside a camera; returns its figures."""
    import sys
    example = peers.start([sys.executable, os.path.join(EXAMPLES, "camera_frames.py"), "--bus", peers.address,
                           "--channel", peers.camera_channel, "--frames", str(frames), "--from", "oldest", "--json"],
                          stdin=subprocess.DEVNULL)
    publish_frames(example)
    out, err = example.communicate(timeout=60)
    assert example.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("%s: 640x480 'AB24', stride 2560 -> numpy (480, 640, 4) uint8, read-only view: True"
                               % peers.camera_channel), lines[0]
    figures = json.loads(lines[-1])
    assert figures["frames"] == frames and figures["viewed_in_place"] == frames * 640 * 480 * 4
    # Every frame read is the publisher's frame of that sequence, pixels in R,G,B,A order.
    numbers = [number for _, number, _ in figures["log"]]
    assert numbers == sorted(set(numbers)), numbers
    for sequence, number, red in figures["log"]:
        assert number == sequence - 1 and red == camera_red_sum(number), (sequence, number, red)
    # The point: reading 24 MB of frames allocated less than one frame.
    assert figures["tracemalloc_peak"] < 640 * 480 * 4, figures
    assert figures["rss_anon_growth"] < 640 * 480 * 4, figures
    return figures


def test_the_camera_example_views_frames_from_their_attributes(peers, channel):
    """A Python camera publishing what examples/camera-publisher publishes, with the
    attributes the Swift one is to give its frames."""
    import numpy
    import shmbus
    peers.camera_channel = channel
    base = numpy.arange(640 * 480, dtype=numpy.uint32)

    def publish_frames(example):
        with shmbus.Publisher(channel, bus=peers.address, capacity=16 << 20) as publisher:
            index = 0
            deadline = time.monotonic() + 30
            while example.poll() is None and time.monotonic() < deadline:
                view = publisher.reserve(640 * 480 * 4, key="frame", attributes=CAMERA)
                pixels = numpy.frombuffer(view, numpy.uint32)
                pixels[:] = ((base + 3 * index) & 0xFF) | 0xFF000000
                pixels[0] = index
                del pixels
                view.release()
                publisher.commit()
                index += 1
                time.sleep(1 / 30)

    figures = run_camera_example(peers, publish_frames)
    assert figures["fps"] > 5, figures


def test_the_segment_example_lists_attributes_and_refuses_a_bad_block():
    """A segment written by the package's writer: the attributes in FORMAT.md's JSON
    form, in block order; a block damaged afterwards is a BadAttributes, exit 2."""
    import struct
    from shmbus.writer import ChannelWriter
    writer = ChannelWriter("py/example-attributes", capacity=1 << 16)
    try:
        writer.append(b"plain", key="p")
        writer.append(bytes(24), key="t", attributes={"dtype": "float32", "shape": [2, 3], "org.example.g": float("-inf")})
        fd = writer.current.fd
        run = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "shmbus_segment.py"), str(fd)],
                             pass_fds=[fd], capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr.decode()
        records = json.loads(run.stdout)["records"]
        assert [r["attributes"] for r in records] == [{}, {"dtype": "float32", "shape": [2, 3], "org.example.g": "-inf"}]
        assert list(records[1]["attributes"]) == ["dtype", "shape", "org.example.g"]
        # The second record's block (key "t": at +72) given a wrong checksum.
        second = records[1]["offset"]
        struct.pack_into("<Q", writer.current.map, second + 72, 0)
        bad = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "shmbus_segment.py"), str(fd)],
                             pass_fds=[fd], capture_output=True, timeout=60)
        assert bad.returncode == 2, bad.stderr.decode()
        assert bad.stderr.decode().startswith("shmbus_segment.py: BadAttributes: record at offset %d: attributes: "
                                              "checksum mismatch" % second), bad.stderr.decode()
    finally:
        writer.close()


def test_the_camera_example_views_the_swift_cameras_frames(own_bus):
    """examples/camera-publisher (Swift: 640x480 AB24 at 30 frames/s, its attributes
    saying so) and the Python example: shape and dtype from the attributes, the frame
    numbers and pixels the Swift code rendered, nothing copied. On a bus of its own:
    the camera's channel is camera/0, whoever runs it."""
    from conftest import binary
    own_bus.camera_channel = "camera/0"

    def publish_frames(example):
        camera = own_bus.start([binary("camera-publisher"), "--bus", own_bus.address, "300"], stdin=subprocess.DEVNULL)
        example.wait(timeout=60)
        camera.kill()
        camera.wait(timeout=10)

    figures = run_camera_example(own_bus, publish_frames, frames=30)
    assert figures["fps"] > 5, figures
