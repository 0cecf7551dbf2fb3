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


def bus_names(address):
    import dbus
    connection = dbus.bus.BusConnection(address)
    try:
        return set(map(str, connection.list_names()))
    finally:
        connection.close()


def test_the_subscriber_example_prints_every_chunk_through_collections(peers, channel):
    count, size = 150, 900
    # 32 KiB segments, a chunk every 3 ms: collected every few dozen chunks.
    peer = peers.test_peer("paced", channel, count, size, 32 * 1024, 3000)
    assert peer.stdout.readline().startswith(b"ready")
    before = bus_names(peers.address)
    example = peers.start(["/usr/bin/python3", os.path.join(EXAMPLES, "subscriber.py"), channel, "--bus", peers.address,
                           "--from", "1", "--until-publisher-leaves"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (bus_names(peers.address) - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    peer.stdin.write(b"go\n")
    peer.stdin.flush()
    assert peer.stdout.readline().startswith(b"published %d" % count)
    peer.stdin.close()                  # the publisher leaves; the example then ends
    out, err = example.communicate(timeout=60)
    assert example.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-1].startswith("publisher :"), lines[-3:]
    # Chunks and gaps cover 1…count exactly, each chunk's hash the publisher's.
    next_sequence = 1
    for line in lines[:-1]:
        words = line.split()
        if line.startswith("gap: "):
            assert int(words[-1]) == next_sequence - 1
            next_sequence += int(words[2])
        else:
            assert line == "sequence %d key - length %d sha256 %s" % (
                next_sequence, size, hashlib.sha256(expected(next_sequence, size)).hexdigest())
            next_sequence += 1
    assert next_sequence == count + 1
    assert sum(l.startswith("sequence ") for l in lines) >= count // 2


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
