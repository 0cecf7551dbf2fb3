"""shmbus.blob against the other implementations, through real dbus-daemons: Swift's
BlobEcho1 (`shmbus bench-worker blob-server`) and the Python one
(examples/python/blob_echo_service.py) take Python's blobs in both forms with their
attributes and refuse test_blob.py's hostile values with the reasons Python gives
them; the Python thumbnailer client (examples/python/thumbnail.py) calls the Swift
example thumbnailer. Tests/ShmBusTests/Blobs/PythonBlobInteropTests.swift makes the
calls the other way, Swift to Python."""
import os
import struct
import subprocess

import dbus
import pytest

from shmbus import format as F
from shmbus.blob import Blob, InvalidBlob, INVALID_BLOB
from conftest import REPO, binary, wait_for_name
from test_blob import hostile_values, open_descriptors

ECHO_IFACE, ECHO_PATH = "org.shmbus.testing.BlobEcho1", "/org/shmbus/testing/BlobEcho1"
SERVICES = {
    "swift": lambda address: [binary("shmbus"), "bench-worker", "blob-server", "--bus", address],
    "python": lambda address: ["/usr/bin/python3", os.path.join(REPO, "examples", "python", "blob_echo_service.py"),
                               "--bus", address],
}


@pytest.fixture(params=sorted(SERVICES))
def echo(request, peers):
    """A BlobEcho1 service in its own process, Swift's or Python's; (proxy, its pid)."""
    server = peers.start(SERVICES[request.param](peers.address))
    ready = server.stdout.readline().decode().split()
    assert ready[:1] == ["ready"], ready
    connection = dbus.bus.BusConnection(peers.address)
    yield dbus.Interface(connection.get_object(ready[1], ECHO_PATH), ECHO_IFACE), server.pid
    connection.close()


@pytest.mark.parametrize("length", [100, 40000, 3 << 20])
def test_echoes_and_copies_what_python_sends(echo, length):
    proxy, _ = echo
    data = os.urandom(length)
    attributes = {"content-type": "application/x-test", "org.example.n": 7, "shape": [length], "dtype": "uint8",
                  "org.example.scale": 0.25}
    with Blob.from_bytes(data, attributes) as sent:
        for method in (proxy.Echo, proxy.Copy):
            with Blob.from_dbus(method(sent.to_dbus(), byte_arrays=True)) as reply:
                assert reply.is_inline == sent.is_inline and reply.bytes() == data and reply.immutable
                assert list(reply.attributes.items()) == [("content-type", "application/x-test"), ("org.example.n", 7),
                                                          ("shape", (length,)), ("dtype", "uint8"),
                                                          ("org.example.scale", 0.25)]
        inline, immutable, size, checksum, seen = proxy.Inspect(sent.to_dbus())
        assert (bool(inline), bool(immutable), int(size), int(checksum)) == (sent.is_inline, True, length, F.mix64(data, 0))
        assert str(seen["content-type"]) == "application/x-test"


def test_memfds_made_in_place_and_from_a_file_pass_the_other_receiver(echo, tmp):
    proxy, _ = echo
    data = os.urandom(5 << 20)
    path = os.path.join(tmp, "data")
    with open(path, "wb") as f:
        f.write(data)

    def fill(view):
        view[:] = data[:len(view)]
    for made in (Blob.writing(len(data), fill), Blob.from_file(path, offset=3, length=len(data) - 3)):
        with made, Blob.from_dbus(proxy.Copy(made.to_dbus(), byte_arrays=True)) as reply:
            assert not made.is_inline and not reply.is_inline and reply.bytes() == made.bytes()


def test_refuses_what_python_refuses_with_the_same_reasons_and_closes_the_descriptors(echo):
    proxy, pid = echo
    assert proxy.EchoBytes(dbus.ByteArray(b"warm"), byte_arrays=True) == b"warm"
    before = open_descriptors(pid)
    values, extra = hostile_values()
    for reason, value in values:
        with pytest.raises(dbus.exceptions.DBusException) as refused:
            proxy.Echo(value)
        assert refused.value.get_dbus_name() == INVALID_BLOB, (reason, refused.value)
        seen = InvalidBlob.from_dbus_error(refused.value)
        assert seen.reason == reason, (reason, refused.value.get_dbus_message())
    for fd in extra:
        os.close(fd)
    assert proxy.EchoBytes(dbus.ByteArray(b"still serving"), byte_arrays=True) == b"still serving"
    assert open_descriptors(pid) == before


def thumbnail_pixel(x, y, factor, width, height):
    """The image's pixel at the centre of the box of (x, y), as the test image has it:
    x in bits 0-11, y in 12-23, alpha 0xA5 (the thumbnailer's XML states the rule)."""
    cx, cy = min(x * factor + factor // 2, width - 1), min(y * factor + factor // 2, height - 1)
    return cx | (cy << 12) | (0xA5 << 24)


@pytest.mark.parametrize("max_side, factor, form", [(100, 10, "inline"), (500, 2, "memfd")])
def test_the_python_thumbnailer_client_against_the_swift_service(peers, tmp, max_side, factor, form):
    peers.start([binary("thumbnailer-service"), "--bus", peers.address, "--idle-exit", "0"])
    wait_for_name(peers.address, "org.shmbus.examples.Thumbnailer1")
    width, height = 1000, 600
    rows = [struct.pack("<%dI" % width, *(x | (y << 12) | (0xA5 << 24) for x in range(width))) for y in range(height)]
    path, output = os.path.join(tmp, "image.rgba"), os.path.join(tmp, "thumb.rgba")
    with open(path, "wb") as f:
        f.writelines(rows)
    done = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "examples", "python", "thumbnail.py"), "--bus", peers.address,
                           "--max-side", str(max_side), path, str(width), str(height), output], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    w, h = width // factor, height // factor
    assert done.stdout.decode().strip() == "%dx%d AB24, %d bytes (%s)" % (w, h, w * h * 4, form)
    with open(output, "rb") as f:
        pixels = struct.unpack("<%dI" % (w * h), f.read())
    assert all(pixels[y * w + x] == thumbnail_pixel(x, y, factor, width, height) for y in range(h) for x in range(w))
