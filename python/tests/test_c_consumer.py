"""examples/c/subscriber.c, a GLib/GDBus subscriber in plain C (no ShmBus library),
compiled here with `cc $(pkg-config --cflags --libs gio-2.0 gio-unix-2.0)` and run
against Swift publishers: every chunk's SHA-256, exact gaps, through collections; a
hostile publisher's scribbles end it with a message, never a crash."""
import hashlib
import os
import subprocess

import pytest

from conftest import REPO, binary
from payloads import expected

SOURCE = os.path.join(REPO, "examples", "c", "subscriber.c")


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "gio-2.0", "gio-unix-2.0"], capture_output=True, text=True)
    if flags.returncode != 0:
        pytest.fail("GLib's headers are missing (apt-get install libglib2.0-dev): " + flags.stderr, pytrace=False)
    out = str(tmp_path_factory.mktemp("pyshm-c") / "shmbus-subscribe")
    built = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, SOURCE] + flags.stdout.split(),
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    with open(SOURCE) as f:
        assert sum(1 for _ in f) <= 400
    return out


def check_output(lines, payload_of, count):
    next_sequence, chunks = 1, 0
    for line in lines:
        words = line.split()
        if line.startswith("gap: "):
            assert int(words[-1]) == next_sequence - 1, line
            next_sequence += int(words[2])
            continue
        assert line == "sequence %d key - length %d sha256 %s" % (
            next_sequence, len(payload_of(next_sequence)), hashlib.sha256(payload_of(next_sequence)).hexdigest()), line
        next_sequence += 1
        chunks += 1
    assert next_sequence == count + 1
    return chunks


def test_the_c_consumer_follows_a_swift_publisher_through_collections(peers, channel, consumer):
    count, size = 300, 1100
    peer = peers.test_peer("paced", channel, count, size, 32 * 1024, 1000)
    assert peer.stdout.readline().startswith(b"ready")
    c = peers.start([consumer, channel, "--bus", peers.address, "--from", "1", "--until-publisher-leaves"],
                    stdin=subprocess.DEVNULL)
    peer.stdin.write(b"go\n")
    peer.stdin.flush()
    assert peer.stdout.readline().startswith(b"published %d" % count)
    peer.stdin.close()
    out, err = c.communicate(timeout=60)
    assert c.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-1].startswith("publisher :"), lines[-3:]
    chunks = check_output(lines[:-1], lambda n: expected(n, size), count)
    assert chunks >= count // 2


def test_the_c_consumer_reads_shmbus_publish_lines_with_keys(peers, channel, consumer):
    lines = [b"first", b"second line", b"x" * 5000, b"last"]
    publisher = peers.start([binary("shmbus"), "publish", "--channel", channel, "--lines", "--persistent",
                             "--key", "k", "--bus", peers.address])
    publisher.communicate(b"\n".join(lines) + b"\n", timeout=30)
    assert publisher.returncode == 0
    run = subprocess.run([consumer, channel, "--bus", peers.address, "--from", "oldest", "--until-publisher-leaves"],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    # One key: only its newest chunk is live; the publisher is gone (persistent segment).
    assert run.stdout.decode().splitlines() == [
        "sequence 4 key k length 4 sha256 %s" % hashlib.sha256(b"last").hexdigest(), "publisher (none) left"]


def test_the_c_consumer_refuses_a_scribbled_segment_without_crashing(peers, channel, consumer):
    peer = peers.test_peer("scribble", channel, 11)
    assert peer.stdout.readline().startswith(b"ready")
    refused = 0
    for _ in range(25):
        peer.stdin.write(b"x\n")
        peer.stdin.flush()
        assert peer.stdout.readline().startswith(b"scribbled")
        c = subprocess.Popen([consumer, channel, "--bus", peers.address, "--from", "oldest", "--count", "64"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = c.communicate(timeout=1.5)
        except subprocess.TimeoutExpired:
            c.kill()                       # still waiting for more chunks: it read what there was
            out, err = c.communicate()
            continue
        assert c.returncode >= 0, "killed by signal %d" % -c.returncode
        if c.returncode == 2:
            assert err.decode().startswith("shmbus-subscribe: "), err
            refused += 1
    assert refused > 0
