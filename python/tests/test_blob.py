"""shmbus.blob against docs/BLOBS.md: both forms made every way, every receiver check
refused with its reason, and real calls to Swift's BlobEcho1 (`shmbus bench-worker
blob-server`) and the Swift example thumbnailer, both ways through a real dbus-daemon."""
import fcntl
import mmap
import os
import struct
import subprocess
import sys

import dbus
import pytest

from shmbus import format as F
from shmbus.blob import Blob, InvalidBlob, DEFAULT_THRESHOLD, INVALID_BLOB, SIGNATURE
from conftest import REPO, binary

ECHO_IFACE, ECHO_PATH = "org.shmbus.testing.BlobEcho1", "/org/shmbus/testing/BlobEcho1"


def struct_value(attributes, inline, fds, offset, length):
    return dbus.Struct((dbus.Dictionary(attributes, signature="sv"), dbus.ByteArray(inline),
                        dbus.Array([dbus.types.UnixFd(fd) for fd in fds], signature="h"), dbus.UInt64(offset),
                        dbus.UInt64(length)), signature=SIGNATURE[1:-1])


def memfd(data, seals=None):
    fd = os.memfd_create("test-blob", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals is not None:
        fcntl.fcntl(fd, F.F_ADD_SEALS, seals)
    return fd


SEALED = F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_WRITE | F.F_SEAL_SEAL


# MARK: making and reading

def test_the_threshold_decides_the_form_and_a_memfd_is_sealed_before_it_leaves():
    small = Blob.from_bytes(b"a" * (DEFAULT_THRESHOLD - 1))
    assert small.is_inline and small.length == DEFAULT_THRESHOLD - 1
    with Blob.from_bytes(b"b" * DEFAULT_THRESHOLD) as large:
        assert not large.is_inline
        assert fcntl.fcntl(large.fd, F.F_GET_SEALS) == SEALED
        assert os.readlink("/proc/self/fd/%d" % large.fd).startswith("/memfd:shmbus-blob")
        # Sealed for writing: not even a writable shared mapping can be made of it.
        with pytest.raises(PermissionError):
            mmap.mmap(large.fd, large.length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        assert large.bytes() == b"b" * DEFAULT_THRESHOLD
    assert Blob.from_bytes(b"c" * 10, threshold=0).fd is not None


def test_written_in_place_in_both_forms_and_a_kept_view_makes_no_blob():
    def fill(view):
        view[:] = bytes(i % 251 for i in range(len(view)))
    for length in (100, 1 << 20):
        with Blob.writing(length, fill) as blob:
            assert blob.is_inline == (length < DEFAULT_THRESHOLD)
            assert blob.bytes() == bytes(i % 251 for i in range(length))
    # The view itself is released when `write` returns: keeping it is harmless.
    kept = []
    Blob.writing(1 << 20, kept.append).close()
    with pytest.raises(ValueError):
        kept[0][0]
    # A slice of it still holds the mapping, which cannot be closed: no blob is made.
    with pytest.raises(BufferError):
        Blob.writing(1 << 20, lambda view: kept.append(view[:16]))
    kept.clear()


def test_from_a_file_copied_in_the_kernel_with_a_window(tmp):
    path = os.path.join(tmp, "data")
    data = os.urandom(3 << 20)
    with open(path, "wb") as f:
        f.write(data)
    with Blob.from_file(path, offset=12345, length=2 << 20, attributes={"content-type": "application/octet-stream"}) as blob:
        assert not blob.is_inline and blob.bytes() == data[12345:12345 + (2 << 20)]
        assert dict(blob.attributes) == {"content-type": "application/octet-stream"}
    assert Blob.from_file(path, offset=len(data) - 5).bytes() == data[-5:]
    with pytest.raises(InvalidBlob) as refused:
        Blob.from_file(path, offset=len(data), length=1)
    assert refused.value.reason == "out-of-bounds"


def test_a_window_at_an_unaligned_offset_maps_the_right_bytes():
    data = bytes(range(256)) * 100
    value = struct_value({}, b"", [memfd(data, SEALED)], 5000, 77)
    with Blob.from_dbus(value) as blob, blob.view() as payload:
        assert bytes(payload) == data[5000:5077] and payload.readonly and blob.immutable


def test_attributes_keep_their_order_and_bad_ones_are_refused_when_made():
    attributes = {"width": 4, "height": 2, "pixel-format": "AB24", "org.example.note": "hi", "scale": 0.5}
    blob = Blob.from_bytes(bytes(32), attributes)
    assert list(blob.attributes) == list(attributes)
    round_trip = Blob.from_dbus(blob.to_dbus())
    assert list(round_trip.attributes) == list(attributes) and round_trip.attributes.image.width == 4
    with pytest.raises(InvalidBlob) as refused:
        Blob.from_bytes(bytes(8), {"width": 4, "height": 2, "pixel-format": "AB24"})     # 32 bytes of pixels in 8
    assert refused.value.reason == "attributes"


# MARK: the receiver's checks, each refused with its reason

def hostile_values():
    data = os.urandom(64)
    write_only = memfd(data, SEALED)
    reopened = os.open("/proc/self/fd/%d" % write_only, os.O_WRONLY)
    read, write = os.pipe()
    regular = os.open(__file__, os.O_RDONLY)
    return [
        ("form", struct_value({}, b"", [memfd(data, SEALED), memfd(data, SEALED)], 0, 64)),
        ("form", struct_value({}, b"abc", [], 0, 4)),
        ("form", struct_value({}, b"abc", [], 1, 3)),
        ("form", struct_value({}, b"x", [memfd(data, SEALED)], 0, 1)),
        ("form", struct_value({}, b"", [memfd(data, SEALED)], 0, 0)),
        ("attributes", struct_value({"Bad Name": dbus.String("x", variant_level=1)}, b"abcd", [], 0, 4)),
        ("attributes", struct_value({"width": dbus.Int32(1, variant_level=1)}, b"abcd", [], 0, 4)),
        ("attributes", struct_value({"shape": dbus.Array([dbus.Int64(100)], signature="x", variant_level=1),
                                     "dtype": dbus.String("float32", variant_level=1)}, b"", [memfd(data, SEALED)], 0, 64)),
        ("not-memfd", struct_value({}, b"", [regular], 0, 1)),
        ("not-memfd", struct_value({}, b"", [read], 0, 1)),
        ("not-sealed", struct_value({}, b"", [memfd(data)], 0, 64)),
        ("not-sealed", struct_value({}, b"", [memfd(data, F.F_SEAL_SHRINK | F.F_SEAL_GROW)], 0, 64)),
        ("not-readable", struct_value({}, b"", [reopened], 0, 64)),
        ("out-of-bounds", struct_value({}, b"", [memfd(data, SEALED)], 60, 5)),
        ("out-of-bounds", struct_value({}, b"", [memfd(data, SEALED)], (1 << 64) - 1, 1)),
    ], [write_only, write]


def test_every_check_refuses_with_its_reason():
    values, extra = hostile_values()
    for reason, value in values:
        with pytest.raises(InvalidBlob) as refused:
            Blob.from_dbus(value)
        assert refused.value.reason == reason, (reason, str(refused.value))
        assert str(refused.value).startswith(reason + ": ")
    for fd in extra:
        os.close(fd)


def test_a_future_write_seal_is_accepted_as_mutable():
    fd = memfd(b"z" * 64, F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_FUTURE_WRITE)
    with Blob.from_dbus(struct_value({}, b"", [fd], 0, 64)) as blob:
        assert not blob.immutable and blob.bytes() == b"z" * 64


# MARK: against Swift, through a real bus

@pytest.fixture
def swift_echo(peers):
    """Swift's BlobEcho1 service in its own process; (connection, proxy interface)."""
    server = peers.start([binary("shmbus"), "bench-worker", "blob-server", "--bus", peers.address])
    ready = server.stdout.readline().decode().split()
    assert ready[:1] == ["ready"], ready
    connection = dbus.bus.BusConnection(peers.address)
    yield dbus.Interface(connection.get_object(ready[1], ECHO_PATH), ECHO_IFACE)
    connection.close()


@pytest.mark.parametrize("length", [100, 40000, 3 << 20])
def test_swift_echoes_and_copies_what_python_sends(swift_echo, length):
    data = os.urandom(length)
    attributes = {"content-type": "application/x-test", "org.example.n": 7, "shape": [length], "dtype": "uint8"}
    with Blob.from_bytes(data, attributes) as sent:
        for method in (swift_echo.Echo, swift_echo.Copy):
            with Blob.from_dbus(method(sent.to_dbus(), byte_arrays=True)) as reply:
                assert reply.is_inline == sent.is_inline and reply.bytes() == data and reply.immutable
                assert list(reply.attributes.items()) == [("content-type", "application/x-test"), ("org.example.n", 7),
                                                          ("shape", (length,)), ("dtype", "uint8")]
        inline, immutable, size, checksum, seen = swift_echo.Inspect(sent.to_dbus())
        assert (bool(inline), bool(immutable), int(size), int(checksum)) == (sent.is_inline, True, length, F.mix64(data, 0))
        assert str(seen["content-type"]) == "application/x-test"


def test_swift_refuses_what_python_should_refuse_with_the_same_reasons(swift_echo):
    values, extra = hostile_values()
    for reason, value in values:
        with pytest.raises(dbus.exceptions.DBusException) as refused:
            swift_echo.Echo(value)
        assert refused.value.get_dbus_name() == INVALID_BLOB, (reason, refused.value)
        assert refused.value.get_dbus_message().startswith(reason + ": "), (reason, refused.value.get_dbus_message())
    for fd in extra:
        os.close(fd)
    assert swift_echo.EchoBytes(dbus.ByteArray(b"still serving"), byte_arrays=True) == b"still serving"


def test_the_python_thumbnailer_client_against_the_swift_service(peers, tmp):
    service = peers.start([binary("thumbnailer-service"), "--bus", peers.address, "--idle-exit", "0"])
    from conftest import wait_for_name
    wait_for_name(peers.address, "org.shmbus.examples.Thumbnailer1")
    width, height = 1000, 600
    rows = [struct.pack("<%dI" % width, *(x | (y << 12) | (0xA5 << 24) for x in range(width))) for y in range(height)]
    path, output = os.path.join(tmp, "image.rgba"), os.path.join(tmp, "thumb.rgba")
    with open(path, "wb") as f:
        f.writelines(rows)
    done = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", "thumbnail.py"), "--bus", peers.address,
                           "--max-side", "100", path, str(width), str(height), output], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    # 1000 / 10 = 100, 600 / 10 = 60: each pixel the centre (x*10+5, y*10+5) of its box.
    assert done.stdout.decode().strip() == "100x60 AB24, 24000 bytes (inline)"
    with open(output, "rb") as f:
        pixels = struct.unpack("<%dI" % (100 * 60), f.read())
    assert all(pixels[y * 100 + x] == ((x * 10 + 5) | ((y * 10 + 5) << 12) | (0xA5 << 24)) for y in range(60) for x in range(100))
    service.terminate()
