"""shmbus.blob against docs/BLOBS.md, in this process: both forms made every way, every
receiver check refused with its reason, values of other types, the seals enforced at
the sender. test_blob_interop.py makes the same calls through real buses to Swift."""
import errno
import fcntl
import mmap
import os

import dbus
import pytest

from shmbus import format as F
from shmbus.blob import Blob, InvalidBlob, NotABlob, DEFAULT_THRESHOLD, INVALID_ARGS, INVALID_BLOB, SIGNATURE
from shmbus.blob_dbus import InvalidArgsException, InvalidBlobException



def struct_value(attributes, inline, fds, offset, length):
    """A blob's dbus-python value, built by hand; it takes the descriptors `fds` (UnixFd
    duplicates each, the original is closed here)."""
    unix_fds = [dbus.types.UnixFd(fd) for fd in fds]
    for fd in fds:
        os.close(fd)
    return dbus.Struct((dbus.Dictionary(attributes, signature="sv"), dbus.ByteArray(inline),
                        dbus.Array(unix_fds, signature="h"), dbus.UInt64(offset), dbus.UInt64(length)),
                       signature=SIGNATURE[1:-1])


def open_descriptors(pid="self"):
    return len(os.listdir("/proc/%s/fd" % pid))


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


def test_from_a_file_by_copy_file_range_where_the_kernel_allows_and_by_sendfile_where_not(tmp, monkeypatch):
    data = os.urandom(1 << 20)
    source = memfd(data, SEALED)
    path = os.path.join(tmp, "data")
    with open(path, "wb") as f:
        f.write(data)

    def refused(*args):
        raise AssertionError("sendfile called where copy_file_range copies")
    # memfd to memfd: copy_file_range does it all (Linux 6.x refuses it from ext4 or tmpfs
    # files to a memfd with EXDEV, and sendfile copies those, as the next part does).
    with monkeypatch.context() as patch:
        patch.setattr(os, "sendfile", refused)
        with Blob.from_file("/proc/self/fd/%d" % source, offset=100) as blob:
            assert blob.bytes() == data[100:]
    os.close(source)

    def cross_device(*args):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    with monkeypatch.context() as patch:
        patch.setattr(os, "copy_file_range", cross_device)
        with Blob.from_file(path, offset=4097, length=(1 << 20) - 5000) as blob:
            assert blob.bytes() == data[4097:4097 + (1 << 20) - 5000]
            assert fcntl.fcntl(blob.fd, F.F_GET_SEALS) == SEALED


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
    """(reason, value) for every check, and the descriptors the caller closes after."""
    data = os.urandom(64)
    write_only = memfd(data, SEALED)
    reopened = os.open("/proc/self/fd/%d" % write_only, os.O_WRONLY)
    read, write = os.pipe()
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
        ("not-memfd", struct_value({}, b"", [os.open(__file__, os.O_RDONLY)], 0, 1)),
        ("not-memfd", struct_value({}, b"", [read], 0, 1)),
        ("not-sealed", struct_value({}, b"", [memfd(data)], 0, 64)),
        ("not-sealed", struct_value({}, b"", [memfd(data, F.F_SEAL_SHRINK | F.F_SEAL_GROW)], 0, 64)),
        ("not-readable", struct_value({}, b"", [reopened], 0, 64)),
        ("out-of-bounds", struct_value({}, b"", [memfd(data, SEALED)], 60, 5)),
        ("out-of-bounds", struct_value({}, b"", [memfd(data, SEALED)], (1 << 64) - 1, 1)),
        # A variant in the variant is of type v, not int64: refused for a well-known name.
        ("attributes", struct_value({"content-type": dbus.String("text/plain", variant_level=2)}, b"abcd", [], 0, 4)),
        # Two faults: the earlier check decides, whatever the arithmetic of check 7 says.
        ("attributes", struct_value({"Bad": dbus.String("x", variant_level=1)}, b"", [memfd(data, SEALED)], (1 << 64) - 1, 2)),
        ("not-memfd", struct_value({}, b"", [os.open(__file__, os.O_RDONLY)], (1 << 64) - 1, 2)),
        ("not-sealed", struct_value({}, b"", [memfd(data)], 1 << 63, 1 << 63)),
    ], [write_only, write]


def test_every_check_refuses_with_its_reason_and_the_descriptors_go_with_the_values():
    before = open_descriptors()
    values, extra = hostile_values()
    arguments, more = hostile_values()          # a blob's descriptor is taken once: values of their own
    for (reason, value), (_, argument) in zip(values, arguments):
        with pytest.raises(InvalidBlob) as refused:
            Blob.from_dbus(value)
        assert refused.value.reason == reason, (reason, str(refused.value))
        assert str(refused.value).startswith(reason + ": ")
        # What a service replies: the DBusException dbus-python sends as the error.
        with pytest.raises(InvalidBlobException) as replied:
            Blob.argument(argument)
        assert isinstance(replied.value, dbus.DBusException) and replied.value.get_dbus_name() == INVALID_BLOB
        assert replied.value.get_dbus_message().partition(": ")[0] == reason and replied.value.reason == reason
    for fd in extra + more:
        os.close(fd)
    del values, value, arguments, argument, refused, replied
    assert open_descriptors() == before


def test_a_value_of_another_type_is_not_a_blob():
    good = Blob.from_bytes(b"abc").to_dbus()
    not_blobs = [
        "a blob?",
        good[:4],
        dbus.Struct(good, signature="a{sv}ayahtt", variant_level=1),                    # a blob in a variant: v
        dbus.Struct((good[0], good[1], good[2], dbus.Int64(0), good[4]), signature="a{sv}ayahxt"),
        dbus.Struct((dbus.Dictionary({"content-type": "x"}, signature="ss"), *good[1:]), signature="a{ss}ayahtt"),
        ({}, b"", [], 0, 0),                                                            # no D-Bus types at all
    ]
    for value in not_blobs:
        with pytest.raises(NotABlob):
            Blob.from_dbus(value)
        with pytest.raises(InvalidArgsException) as replied:
            Blob.argument(value)
        assert replied.value.get_dbus_name() == INVALID_ARGS and SIGNATURE in replied.value.get_dbus_message()


def test_a_nested_variant_is_an_unknown_type():
    # Skipped under a name of its own, refused under a well-known one (hostile_values).
    value = struct_value({"org.example.x": dbus.Int64(1, variant_level=2), "org.example.y": dbus.Int64(2, variant_level=1)},
                         b"ab", [], 0, 2)
    assert dict(Blob.from_dbus(value).attributes) == {"org.example.y": 2}


def test_an_empty_payload_is_inline_whatever_the_threshold(tmp):
    path = os.path.join(tmp, "empty")
    open(path, "wb").close()
    for blob in (Blob.from_bytes(b"", threshold=0), Blob.writing(0, lambda view: None, threshold=0),
                 Blob.from_file(path, threshold=0)):
        assert blob.is_inline and blob.length == 0 and Blob.from_dbus(blob.to_dbus()).bytes() == b""


def test_no_memfd_leaves_without_its_seals_and_a_closed_blob_not_at_all():
    from shmbus import attributes as A
    for seals, sent in ((None, False), (F.F_SEAL_SHRINK | F.F_SEAL_GROW, False),
                        (F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_FUTURE_WRITE, True)):
        with Blob(A.EMPTY, fd=memfd(b"abcd", seals), length=4) as by_hand:
            if sent:
                with Blob.from_dbus(by_hand.to_dbus()) as received:
                    assert received.bytes() == b"abcd" and not received.immutable
            else:
                with pytest.raises(InvalidBlob) as refused:
                    by_hand.to_dbus()
                assert refused.value.reason == "not-sealed"
    for blob in (Blob.from_bytes(b"x"), Blob.from_bytes(b"x" * DEFAULT_THRESHOLD)):
        assert not blob.closed
        blob.close()
        assert blob.closed and not blob.is_inline
        with pytest.raises(ValueError):
            blob.to_dbus()
        with pytest.raises(ValueError):
            blob.view()


def test_a_view_unmaps_when_it_ends_unless_a_slice_still_holds_it():
    with Blob.from_bytes(bytes(range(256)) * 256) as blob:
        view = blob.view()
        with view as payload:
            kept = payload[10:20]
            assert bytes(kept) == bytes(range(10, 20))
            with pytest.raises(BufferError):
                view.close()
            kept.release()
        with pytest.raises(ValueError):
            payload[0]


def test_a_future_write_seal_is_accepted_as_mutable():
    fd = memfd(b"z" * 64, F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_FUTURE_WRITE)
    with Blob.from_dbus(struct_value({}, b"", [fd], 0, 64)) as blob:
        assert not blob.immutable and blob.bytes() == b"z" * 64
