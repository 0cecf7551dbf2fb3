"""shmbus.latest and the registry client against the real registry, with chunks a
Swift `shmbus publish` wrote: byte for byte, zero-copy, typed errors."""
import hashlib
import os
import subprocess

import pytest

import shmbus
from shmbus.registry import Registry


def publish(peers, channel, data, key="latest", *extra):
    done = peers.shmbus("publish", "--channel", channel, "--key", key, "--persistent", *extra, "-", input=data)
    assert done.returncode == 0, done.stderr.decode()
    # "segment S offset O length L sequence N"
    words = done.stdout.decode().split()
    return dict(zip(words[0::2], words[1::2]))


def test_latest_returns_the_swift_publishers_bytes_without_a_copy(peers, channel):
    data = os.urandom(3 * 1024 * 1024 + 17)
    published = publish(peers, channel, data)
    chunk = shmbus.latest(channel, "latest", bus=peers.address)
    assert isinstance(chunk.payload, memoryview) and chunk.payload.readonly
    assert chunk.payload == data                       # byte for byte
    assert chunk.key == "latest" and chunk.sequence == int(published["sequence"])
    assert chunk.segment.name == published["segment"] and chunk.payload_offset == int(published["offset"])
    assert chunk.segment.channel == channel
    # The view is the mapping itself: numpy's array over it starts at the payload's
    # address in the segment's mapping, and the whole mapping is not copied either.
    numpy = pytest.importorskip("numpy")
    whole = numpy.frombuffer(chunk.segment._map, dtype=numpy.uint8)
    array = numpy.frombuffer(chunk.payload, dtype=numpy.uint8)
    assert array.ctypes.data == whole.ctypes.data + chunk.payload_offset
    assert numpy.shares_memory(array, whole) and not array.flags.writeable
    assert hashlib.sha256(array).digest() == hashlib.sha256(data).digest()


def test_latest_follows_republished_keys(peers, channel):
    publish(peers, channel, b"first")
    # Another publisher continues the channel; the newest chunk of the key is its.
    publish(peers, channel, b"second, longer")
    publish(peers, channel, b"other key", "other")
    assert bytes(shmbus.latest(channel, "latest", bus=peers.address).payload) == b"second, longer"
    assert bytes(shmbus.latest(channel, "other", bus=peers.address).payload) == b"other key"


def test_latest_of_an_unknown_channel_or_key_is_not_found(peers, channel):
    with pytest.raises(shmbus.NotFound, match="no channel"):
        shmbus.latest(channel, "latest", bus=peers.address)
    publish(peers, channel, b"x")
    with pytest.raises(shmbus.NotFound) as raised:
        shmbus.latest(channel, "nope", bus=peers.address)
    assert raised.value.dbus_name == "org.shmbus.Error.NotFound"
    with pytest.raises(shmbus.InvalidArgument):
        shmbus.latest("a//b", "latest", bus=peers.address)


def test_registry_lists_and_opens_what_the_publisher_registered(peers, channel):
    published = publish(peers, channel, b"hello, shared memory")
    with Registry(peers.address) as registry:
        channels = {c.name: c for c in registry.list_channels()}
        assert channels[channel].current_segment == published["segment"]
        assert channels[channel].owner == ""               # the publisher left; the segment is persistent
        segments = registry.list_segments(channel)
        assert [s.name for s in segments] == [published["segment"]]
        assert segments[0].state == "active" and segments[0].persistent
        assert segments[0].committed_bytes == 192          # one 20-byte chunk with a 6-byte key (PROTOCOL.md)
        # Segment names are escaped like channel names: one that starts with a digit
        # gets "_3N" for it.
        from shmbus.format import escape_path_component
        assert segments[0].path == "/org/shmbus/Registry1/segment/" + escape_path_component(published["segment"])
        assert channel in {s.channel for s in registry.list_segments("")}
        found = registry.lookup(channel, "latest")
        assert (found.segment, found.offset, found.length, found.sequence) == (
            published["segment"], int(published["offset"]), 20, int(published["sequence"]))
        opened = registry.open_segment(found.segment)
        try:
            assert opened.info["channel"] == channel and opened.info["state"] == "active"
            assert opened.info["generation"] == 1 and opened.info["persistent"] is True
            with pytest.raises(OSError):
                os.write(opened.fd, b"x")
            segment = shmbus.Segment(opened.fd)
            assert bytes(segment.latest("latest").payload) == b"hello, shared memory"
        finally:
            os.close(opened.fd)
            if opened.doorbell is not None:
                os.close(opened.doorbell)
        # The channel object's path is escaped as sd-bus does; the registry serves it there.
        props = registry.channel(channel)
        assert props["CurrentSegment"] == published["segment"]
        assert registry.channel(channel + "-none") is None
        with pytest.raises(shmbus.NotFound):
            registry.list_segments(channel + "-none")
        with pytest.raises(shmbus.NotFound):
            registry.open_segment("0" * 32)


def test_busctl_introspection_matches_the_signatures_the_client_uses(peers):
    out = subprocess.run(["busctl", "--address=" + peers.address, "introspect", "org.shmbus.Registry1",
                          "/org/shmbus/Registry1", "org.shmbus.Registry1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    members = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0].startswith("."):
            members[fields[0][1:]] = (fields[1], fields[2], fields[3])
    assert members["Lookup"] == ("method", "ss", "sttt")
    assert members["OpenSegment"] == ("method", "s", "ha{sv}")
    assert members["ListChannels"] == ("method", "-", "a(sssttt)")
    assert members["ListSegments"] == ("method", "s", "a(ssottttsbt)")


def test_channel_objects_are_found_at_the_path_the_registry_escapes(peers, channel):
    """sd_bus_path_encode: a digit is escaped only at the very start of the name."""
    from shmbus.format import escape_path_component
    assert escape_path_component("camera/0") == "camera_2f0"
    assert escape_path_component("0a") == "_30a" and escape_path_component("a-b.c_d") == "a_2db_2ec_5fd"
    name = channel + "/0/9x"
    publish(peers, name, b"digits")
    with Registry(peers.address) as registry:
        assert registry.channel(name)["Name"] == name
        objects = registry.connection.call_blocking("org.shmbus.Registry1", "/org/shmbus/Registry1",
                                                    "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "", ())
        paths = [str(p) for p, ifaces in objects.items() if "org.shmbus.Channel1" in ifaces
                 and ifaces["org.shmbus.Channel1"]["Name"] == name]
        assert paths == ["/org/shmbus/Registry1/channel/" + escape_path_component(name)]


def test_channel_names_follow_the_documents_grammar():
    from shmbus.format import channel_name_problem
    valid = ["screenshots", "camera/0", "a", "a" * 200, "A-Z_0.9/x-y", ".", "a/./b", "...", "a..b", ".hidden/..x", "-/_/."]
    invalid = ["", "a" * 201, "/a", "a/", "a//b", "/", "..", "../a", "a/../b", "a/..", "a b", "a:b", "a\\b", "é",
               "camera/0?"]
    assert [n for n in valid if channel_name_problem(n)] == []
    assert [n for n in invalid if not channel_name_problem(n)] == []
