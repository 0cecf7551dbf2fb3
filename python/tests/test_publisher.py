"""shmbus.Publisher against the real registry (which validates every segment it is
given: seals, header, channel) and Swift readers: `shmbus cat` and `shmbus subscribe
--json --checksum` byte for byte, through garbage collections; the Python subscriber
on the futex doorbell; a Swift history continued from Python."""
import json
import os
import subprocess
import time

import pytest

import shmbus
from shmbus import Gap
from shmbus.format import mix64
from shmbus.registry import Registry

from conftest import binary
from payloads import expected


def test_shmbus_cat_reads_what_python_published(peers, channel, tmp):
    data = os.urandom(2 * 1024 * 1024 + 5)
    with shmbus.Publisher(channel, bus=peers.address, capacity=8 << 20) as publisher:
        assert publisher.publish(b"old", key="blob").sequence == 1
        published = publisher.publish(data, key="blob")
        publisher.flush()
        out = os.path.join(tmp, "out")
        cat = peers.shmbus("cat", "--channel", channel, "--key", "blob", "--output", out)
        assert cat.returncode == 0, cat.stderr.decode()
        with open(out, "rb") as f:
            assert f.read() == data
        with Registry(peers.address) as registry:
            found = registry.lookup(channel, "blob")
            assert (found.segment, found.offset, found.length, found.sequence) == (
                published.segment, published.offset, len(data), 2)
            (segment,) = registry.list_segments(channel)
            assert segment.name == publisher.current_segment and segment.live_chunks == 1   # "old" is obsolete
        assert bytes(shmbus.latest(channel, "blob", bus=peers.address).payload) == data
    # Not persistent: gone with the publisher.
    time.sleep(0.1)
    with pytest.raises(shmbus.NotFound):
        shmbus.latest(channel, "blob", bus=peers.address)


def test_a_swift_subscriber_reads_python_chunks_through_collections(peers, channel):
    count = 400
    sizes = [16 + (i * 37) % 1500 for i in range(count)]
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=32 * 1024)
    try:
        swift = peers.start([binary("shmbus"), "subscribe", "--channel", channel, "--from", "1", "--json",
                             "--checksum", "--until-publisher-leaves", "--bus", peers.address], stdin=subprocess.DEVNULL)
        # The first chunk, then the rest once the Swift subscriber has printed it.
        publisher.publish(expected(1, sizes[0]))
        publisher.flush()
        first = swift.stdout.readline()
        generations = set()
        for i in range(1, count):
            published = publisher.publish(expected(i + 1, sizes[i]))
            assert published.sequence == i + 1
            generations.add(published.generation)
            time.sleep(0.001)
        publisher.flush()
    finally:
        publisher.close()
    out, err = swift.communicate(timeout=60)
    assert swift.returncode == 0, err.decode()
    events = [json.loads(line) for line in [first] + out.decode().splitlines()]
    assert events[-1]["event"] == "publisher-left", events[-1]
    assert len(generations) >= 10, "the channel was collected many times"
    next_sequence = 1
    for event in events[:-1]:
        if event["event"] == "gap":
            assert event["after"] == next_sequence - 1
            next_sequence += event["missed"]
        else:
            assert event["event"] == "chunk" and event["sequence"] == next_sequence, event
            assert event["length"] == sizes[next_sequence - 1]
            assert int(event["checksum"], 16) == mix64(expected(next_sequence, sizes[next_sequence - 1]), 0)
            next_sequence += 1
    assert next_sequence == count + 1
    assert sum(e["event"] == "chunk" for e in events) >= count // 2, "a subscriber that keeps up loses little"


def test_the_python_subscriber_wakes_on_the_python_publishers_doorbell(peers, channel):
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="now", wait="futex")
    try:
        got = []
        for i in range(1, 121):
            # In place: a memoryview of the segment, filled, then committed.
            view = publisher.reserve(900, key="k%d" % (i % 3))
            view[:] = expected(i, 900)
            view.release()
            publisher.commit()
            event = subscriber.next_event(timeout=10)
            got.append(event)
        assert [c.sequence for c in got] == list(range(1, 121))
        assert all(c.payload == expected(c.sequence, 900) and c.key == "k%d" % (c.sequence % 3) for c in got)
        assert subscriber.statistics["segments_followed"] >= 3
        # Obsolete chunks: only the newest of each key is live.
        with Registry(peers.address) as registry:
            for k in range(3):
                assert registry.lookup(channel, "k%d" % k).sequence == max(i for i in range(1, 121) if i % 3 == k)
    finally:
        subscriber.close()
        publisher.close()


def test_python_continues_a_history_swift_left(peers, channel):
    """A Swift persistent publish, then a Python publisher on the same channel: the
    next generation, sequences after Swift's, the other key carried over."""
    done = peers.shmbus("publish", "--channel", channel, "--key", "swift", "--persistent", "-", input=b"from swift")
    assert done.returncode == 0, done.stderr.decode()
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024, persistent=True) as publisher:
        assert publisher.writer.current.generation == 2 and publisher.writer.inherited == 1
        published = publisher.publish(b"from python", key="python")
        assert published.sequence == 2
    for key, data in [("swift", b"from swift"), ("python", b"from python")]:
        cat = peers.shmbus("cat", "--channel", channel, "--key", key)
        assert cat.returncode == 0 and cat.stdout == data, cat.stderr.decode()
    with Registry(peers.address) as registry:
        states = sorted((s.generation, s.state) for s in registry.list_segments(channel))
        assert states == [(1, "retired"), (2, "active")]


def test_with_the_registry_gone_readers_follow_through_the_python_publisher(own_bus, channel):
    """The Python publisher serves Publisher1.OpenSegment: with the registry killed,
    the Swift subscriber (`shmbus subscribe`) and the Python one get every successor
    from it, and lose nothing; a registry started again gets the current segment
    registered again."""
    count, size = 300, 1200
    publisher = shmbus.Publisher(channel, bus=own_bus.address, capacity=32 * 1024)
    assert publisher._service is not None, "python3-gi is needed to serve Publisher1"
    try:
        # What it serves: its current segment, read-only; nothing else.
        import dbus
        connection = dbus.bus.BusConnection(own_bus.address)
        served = shmbus.registry.Publisher(connection, publisher.connection.get_unique_name())
        assert served.current_segment() == publisher.current_segment
        fd = served.open_segment(publisher.current_segment)
        with pytest.raises(OSError):
            os.write(fd, b"x")
        assert shmbus.Segment(fd).name == publisher.current_segment
        os.close(fd)
        with pytest.raises(shmbus.NotFound):
            served.open_segment("0" * 32)
        connection.close()

        swift = own_bus.start([binary("shmbus"), "subscribe", "--channel", channel, "--from", "1", "--json",
                               "--checksum", "--count", str(count), "--bus", own_bus.address], stdin=subprocess.DEVNULL)
        subscriber = shmbus.Subscriber(channel, bus=own_bus.address, start=1)
        # The first chunk while the registry runs; the rest once both have read it.
        publisher.publish(expected(1, size))
        publisher.flush()
        first = swift.stdout.readline()
        ours = [subscriber.next_event(timeout=10)]
        own_bus.private.kill_registry()
        for i in range(2, count + 1):
            publisher.publish(expected(i, size))
            time.sleep(0.001)
            event = subscriber.poll()
            while event is not None:
                ours.append(event)
                event = subscriber.poll()
        publisher.flush()
        while sum(1 for e in ours if not isinstance(e, Gap)) + sum(e.missed for e in ours if isinstance(e, Gap)) < count:
            event = subscriber.next_event(timeout=10)
            assert event is not None
            ours.append(event)
        assert [e.sequence for e in ours] == list(range(1, count + 1)), "no gap"
        assert all(e.payload == expected(e.sequence, size) for e in ours)
        assert subscriber.statistics["from_publisher"] >= 10
        subscriber.close()
        out, err = swift.communicate(timeout=60)
        assert swift.returncode == 0, err.decode()
        theirs = [json.loads(line) for line in [first] + out.decode().splitlines()]
        assert [e["sequence"] for e in theirs] == list(range(1, count + 1)), "no gap in Swift either"
        assert all(int(e["checksum"], 16) == mix64(expected(e["sequence"], size), 0) for e in theirs)
        # A registry again: the publisher registers its current segment with it.
        own_bus.private.start_registry()
        deadline = time.monotonic() + 20
        with Registry(own_bus.address) as registry:
            while time.monotonic() < deadline:
                try:
                    if registry.current_segment(channel) == (publisher.current_segment,
                                                             publisher.connection.get_unique_name()):
                        break
                except shmbus.BusError:
                    pass
                time.sleep(0.05)
            else:
                pytest.fail("the publisher did not register again")
    finally:
        publisher.close()


def test_a_signal_subscriber_gets_the_python_publishers_signals_at_once(peers, channel):
    """The publisher holds its signals back for 10 s after the first; only the
    doorbell's awaiting-signal flag, which a wait="signal" subscriber sets before it
    waits, makes it send each at once. (serve=False: the subscriber iterates GLib's
    default context itself.)"""
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024, signal_interval=10.0, serve=False)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="now", wait="signal")
    try:
        assert subscriber.next_event(timeout=0.2) is None          # waiting: the flag is set
        import threading
        for i in range(1, 11):
            # Published while the subscriber waits (its own look comes only every 0.5 s).
            published_at = []
            later = threading.Timer(0.05, lambda: (publisher.publish(expected(i, 100)),
                                                   published_at.append(time.monotonic())))
            later.start()
            chunk = subscriber.next_event(timeout=5)
            received_at = time.monotonic()
            later.join()
            assert chunk.sequence == i and chunk.payload == expected(i, 100)
            took = received_at - published_at[0]
            assert took < 0.2, "chunk %d took %.3f s: the signal was not sent at once" % (i, took)
        assert subscriber.statistics["signals"] >= 10 and publisher.signals_sent >= 10
    finally:
        subscriber.close()
        publisher.close()


def test_asyncio_latest(peers, channel):
    import asyncio
    with shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024) as publisher:
        publisher.publish(b"async bytes", key="k")
        chunk = asyncio.run(shmbus.aio.latest(channel, "k", bus=peers.address))
        assert bytes(chunk.payload) == b"async bytes" and chunk.sequence == 1


def test_swift_futex_readers_are_woken_by_the_python_publishers_doorbell(peers, channel):
    """`shmbus subscribe --wait futex` sleeps on the doorbell (no signals): between
    chunks published 40 ms apart it sets `sleeping`, and the Python publisher rings
    (FUTEX_WAKE_OP: sleeping cleared, word + 1, wake). (The latency bound is loose:
    a Swift reader that misses wake-ups shortens its waits to 10 ms by itself.)"""
    count = 25
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024)
    try:
        swift = peers.start([binary("shmbus"), "subscribe", "--channel", channel, "--from", "1", "--json",
                             "--wait", "futex", "--count", str(count), "--bus", peers.address], stdin=subprocess.DEVNULL)
        publisher.publish(expected(1, 64))
        first = swift.stdout.readline()
        for i in range(2, count + 1):
            time.sleep(0.04)
            publisher.publish(expected(i, 64))
        out, err = swift.communicate(timeout=60)
        assert swift.returncode == 0, err.decode()
        # The word goes up only when the publisher rang for a reader that said it sleeps.
        rings = publisher.doorbell.word()
    finally:
        publisher.close()
    assert rings >= count // 2, "the reader slept before most chunks, so most commits rang: %d rings" % rings
    events = [json.loads(line) for line in [first] + out.decode().splitlines()]
    assert [e["sequence"] for e in events] == list(range(1, count + 1))
    latencies = sorted(e["latencyMicroseconds"] for e in events[1:])
    assert latencies[len(latencies) // 2] < 20000, "median %.0f us: the doorbell did not wake the reader" % (
        latencies[len(latencies) // 2])


def test_a_held_back_committed_signal_is_sent_when_its_interval_is_over(peers, channel):
    """Coalescing: the second of two quick commits is held back, and the serving
    thread's loop sends it once the interval (0.3 s) is over, without a flush."""
    monitor = peers.start(["dbus-monitor", "--address", peers.address, "--profile",
                           "type='signal',interface='org.shmbus.Publisher1',member='Committed',arg0='%s'" % channel],
                          stdin=subprocess.DEVNULL)
    time.sleep(0.3)                        # the monitor is listening
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024, signal_interval=0.3)
    try:
        publisher.publish(b"one")          # sent at once (the first)
        publisher.publish(b"two")          # held back
        publisher.connection.flush()
        time.sleep(0.1)
        assert publisher.signals_sent == 1
        time.sleep(0.5)
        assert publisher.signals_sent == 2, "the held-back signal was not sent by the timer"
    finally:
        publisher.close()
    time.sleep(0.2)
    monitor.terminate()
    out, _ = monitor.communicate(timeout=10)
    committed = [l for l in out.decode().splitlines() if l.startswith("sig") and "Committed" in l]
    assert len(committed) == 2, out.decode()


@pytest.mark.parametrize("linger", [3.0, 0.0])
def test_a_reader_on_the_retired_segment_gets_the_last_chunks_while_the_publisher_lingers(peers, channel, linger):
    """Closed right after a collection, a non-persistent publisher takes the new
    segment along (the registry drops it as the publisher leaves); `linger` keeps it
    on the bus for a reader that is still on the retired one. The reader here maps
    the first segment, then reads only 0.5 s after the close began."""
    import threading
    publisher = shmbus.Publisher(channel, bus=peers.address, capacity=64 * 1024, linger=linger)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="oldest", end_when_publisher_leaves=True)
    try:
        first = publisher.current_segment
        while publisher.current_segment == first:
            publisher.publish(expected(publisher.last_sequence + 1, 1024))
        publisher.publish(expected(publisher.last_sequence + 1, 1024))
        last = publisher.last_sequence
        closing = threading.Thread(target=publisher.close)
        closing.start()
        time.sleep(0.5)
        events = list(subscriber)
        closing.join()
        chunks = [e for e in events if isinstance(e, shmbus.Chunk)]
        assert [c.sequence for c in chunks] == list(range(1, len(chunks) + 1))
        assert all(c.payload == expected(c.sequence, 1024) for c in chunks)
        assert isinstance(events[-1], shmbus.PublisherLeft)
        if linger:
            assert len(chunks) == last and subscriber.statistics["successors_lost"] == 0
        else:
            assert len(chunks) < last and subscriber.statistics["successors_lost"] == 1
    finally:
        subscriber.close()
        publisher.close()
