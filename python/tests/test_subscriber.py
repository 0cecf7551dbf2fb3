"""shmbus.Subscriber against Swift publishers: every chunk byte for byte, in order,
through garbage collections (small capacities, so the channel rotates many times),
exact gaps when the reader falls behind, the same events as the Swift subscriber, the
publisher's departure, and the waits (futex doorbell, commit-word polling, Committed
signals with the doorbell's awaiting-signal flag)."""
import json
import time

import pytest

import shmbus
from shmbus import Gap, PublisherLeft
from shmbus.registry import Registry

from payloads import expected


def ready(process):
    line = process.stdout.readline().decode()
    assert line.startswith("ready "), line + process.stderr.read().decode()
    return line.split()[1]


def collect(subscriber, count, timeout=60):
    """Events until `count` sequences were delivered or reported missing."""
    events, covered = [], 0
    deadline = time.monotonic() + timeout
    while covered < count:
        event = subscriber.next_event(timeout=max(deadline - time.monotonic(), 0))
        assert event is not None, "timed out after %d of %d sequences: %r" % (covered, count, events[-3:])
        events.append(event)
        if isinstance(event, Gap):
            covered += event.missed
        elif not isinstance(event, PublisherLeft):
            covered += 1
    return events


def check_history(events, first, last, size):
    """Delivered chunks and gaps cover first…last exactly once, in order, and every
    chunk delivered is the publisher's payload byte for byte."""
    next_sequence = first
    delivered = 0
    for event in events:
        if isinstance(event, Gap):
            assert event.after == next_sequence - 1, events
            next_sequence += event.missed
        elif isinstance(event, PublisherLeft):
            continue
        else:
            assert event.sequence == next_sequence, (event, next_sequence)
            assert isinstance(event.payload, memoryview)
            assert event.payload == expected(event.sequence, size), "chunk %d differs" % event.sequence
            next_sequence += 1
            delivered += 1
    assert next_sequence == last + 1
    return delivered


@pytest.mark.parametrize("wait", ["futex", "poll", "signal"])
def test_a_paced_publisher_is_read_whole_through_collections(peers, channel, wait):
    count, size = 300, 1500
    # 64 KiB segments: about 40 records each, so the channel is collected every few
    # dozen chunks and the subscriber follows successors all along.
    peer = peers.test_peer("paced", channel, count, size, 64 * 1024, 1000)
    first_segment = ready(peer)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="now", wait=wait)
    try:
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        events = collect(subscriber, count)
        # A reader that keeps up sees no gap; every chunk, byte for byte.
        assert not [e for e in events if isinstance(e, Gap)], [e for e in events if isinstance(e, Gap)]
        assert check_history(events, 1, count, size) == count
        assert subscriber.statistics["segments_followed"] >= 5
        assert events[-1].segment.name != first_segment
        assert events[-1].segment.generation == 1 + subscriber.statistics["segments_followed"]
        assert subscriber.statistics["from_publisher"] == 0      # the registry had them all
        if wait == "futex":
            assert subscriber.statistics["futex_wakes"] > 0
        if wait == "signal":
            assert subscriber.statistics["signals"] > 0 and subscriber.statistics["ignored_signals"] == 0
    finally:
        subscriber.close()


def test_a_reader_that_falls_behind_gets_exact_gaps(peers, channel):
    count, size = 2000, 1000
    peer = peers.test_peer("publish", channel, count, size, 64 * 1024, "wait")
    ready(peer)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="now", wait="futex")
    try:
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        # The publisher floods; the subscriber sleeps before reading at all, so the
        # chunks it did not reach were collected away.
        assert peer.stdout.readline().startswith(b"published 2000")
        events = collect(subscriber, count)
        gaps = [e for e in events if isinstance(e, Gap)]
        assert gaps, "2000 chunks in 64 KiB segments cannot all still be there"
        delivered = check_history(events, 1, count, size)
        assert delivered + sum(g.missed for g in gaps) == count
        assert delivered >= 1
    finally:
        subscriber.close()


def test_start_from_a_sequence_reports_what_is_gone_as_a_gap(peers, channel):
    count, size = 400, 2000
    peer = peers.test_peer("publish", channel, count, size, 64 * 1024)
    ready(peer)
    assert peer.stdout.readline().startswith(b"published 400")
    with Registry(peers.address) as registry:
        current, _ = registry.current_segment(channel)
        opened = registry.open_segment(current)
        held = [r.sequence for r in shmbus.Segment(opened.fd).records()]
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start=1)
    try:
        first = subscriber.next_event(timeout=10)
        assert first == Gap(missed=held[0] - 1, after=0)
        events = [first] + collect(subscriber, count - held[0] + 1)
        assert check_history(events, 1, count, size) == count - held[0] + 1
        # From "now" nothing is pending; from "oldest" the first event is a chunk.
        now = shmbus.Subscriber(channel, bus=peers.address, start="now")
        assert now.next_event(timeout=0.3) is None
        now.close()
        oldest = shmbus.Subscriber(channel, bus=peers.address, start="oldest")
        assert oldest.next_event(timeout=5).sequence == held[0]
        oldest.close()
    finally:
        subscriber.close()


def test_python_and_swift_subscribers_see_the_same_events(peers, channel):
    """A persistent channel whose publisher left: `shmbus subscribe --json` and the
    Python subscriber read it from sequence 1 and must agree event for event."""
    count, size = 300, 3000
    peer = peers.test_peer("publish", channel, count, size, 64 * 1024, "persistent")
    ready(peer)
    assert peer.stdout.readline().startswith(b"published 300")
    peer.stdin.close()
    peer.wait(timeout=30)
    swift = peers.shmbus("subscribe", "--channel", channel, "--from", "1", "--json", "--checksum",
                         "--until-publisher-leaves")
    assert swift.returncode == 0, swift.stderr.decode()
    theirs = [json.loads(line) for line in swift.stdout.decode().splitlines()]
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start=1, end_when_publisher_leaves=True)
    try:
        ours = list(subscriber)
    finally:
        subscriber.close()
    assert isinstance(ours[-1], PublisherLeft) and ours[-1].owner == ""
    mine = []
    for event in ours:
        if isinstance(event, Gap):
            mine.append(("gap", event.missed, event.after))
        elif isinstance(event, PublisherLeft):
            mine.append(("left", event.owner))
        else:
            mine.append(("chunk", event.sequence, len(event.payload), "%016x" % shmbus.format.mix64(event.payload, 0)))
    def swift_event(e):
        if e["event"] == "gap":
            return ("gap", e["missed"], e["after"])
        if e["event"] == "chunk":
            return ("chunk", e["sequence"], e["length"], e["checksum"].replace("0x", "").rjust(16, "0"))
        return ("left", e.get("owner", ""))
    assert mine == [swift_event(e) for e in theirs]
    assert any(e[0] == "gap" for e in mine) and any(e[0] == "chunk" for e in mine)
    check_history(ours, 1, count, size)


def test_lines_published_by_shmbus_publish_arrive_as_chunks_through_collections(peers, channel):
    publisher = peers.start(["%s" % __import__("conftest").binary("shmbus"), "publish", "--channel", channel,
                             "--lines", "--capacity", "16KiB", "--bus", peers.address])
    # The channel appears with the first line.
    lines = [("line %d " % i).encode() + bytes([65 + i % 26]) * (i * 7 % 300) for i in range(400)]
    publisher.stdin.write(lines[0] + b"\n")
    publisher.stdin.flush()
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="oldest")
    try:
        got = [subscriber.next_event(timeout=10)]
        for line in lines[1:]:
            publisher.stdin.write(line + b"\n")
            publisher.stdin.flush()
            got.append(subscriber.next_event(timeout=10))
        assert [bytes(c.payload) for c in got] == lines
        assert [c.sequence for c in got] == list(range(1, len(lines) + 1))
        assert subscriber.statistics["segments_followed"] >= 3
        publisher.stdin.close()
        assert publisher.wait(timeout=30) == 0
        left = subscriber.next_event(timeout=10)
        assert isinstance(left, PublisherLeft) and left.owner.startswith(":")
    finally:
        subscriber.close()


def test_spoofed_committed_signals_are_ignored(peers, channel):
    import dbus
    import dbus.lowlevel
    peer = peers.test_peer("publish", channel, 1, 64, 64 * 1024, "wait")
    ready(peer)
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="now", wait="signal")
    spoofer = dbus.bus.BusConnection(peers.address)
    try:
        message = dbus.lowlevel.SignalMessage("/org/shmbus/Publisher1", "org.shmbus.Publisher1", "Committed")
        message.append(channel, "0" * 32, dbus.UInt64(1), dbus.UInt64(4096), dbus.UInt64(8192), dbus.UInt64(1),
                       dbus.UInt64(1), signature="ssttttt")
        spoofer.send_message(message)
        spoofer.flush()
        assert subscriber.next_event(timeout=1.0) is None
        assert subscriber.statistics["ignored_signals"] >= 1 and subscriber.statistics["signals"] == 0
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        chunk = subscriber.next_event(timeout=10)
        assert chunk.sequence == 1 and chunk.payload == expected(1, 64)
        # The chunk may have been found before its signal was dispatched: the next
        # wait dispatches it (and counts it as the owner's).
        assert subscriber.next_event(timeout=0.5) is None
        assert subscriber.statistics["signals"] >= 1
    finally:
        spoofer.close()
        subscriber.close()


def test_asyncio_subscribe(peers, channel):
    import asyncio
    count, size = 200, 700
    peer = peers.test_peer("paced", channel, count, size, 32 * 1024, 500)
    ready(peer)

    async def run():
        stream = shmbus.aio.subscribe(channel, bus=peers.address, start="oldest")
        events = []
        ticks = [0]

        async def ticker():
            while True:
                await asyncio.sleep(0.005)
                ticks[0] += 1

        beat = asyncio.create_task(ticker())
        first = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0.3)                 # subscribed (nothing published yet)
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        events.append(await asyncio.wait_for(first, 30))
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
        await stream.aclose()
        beat.cancel()
        return events, ticks[0]

    events, ticks = asyncio.run(run())
    assert check_history(events, 1, count, size) == count
    assert ticks > 20, "the event loop kept running while the subscriber waited"


def test_with_the_registry_gone_successors_come_from_the_publisher(own_bus, channel):
    """PROTOCOL.md, "org.shmbus.Publisher1": a subscriber whose registry is away gets
    the successors from the publisher's OpenSegment, checked, and loses nothing."""
    count, size = 240, 1500
    peer = own_bus.test_peer("paced", channel, count, size, 64 * 1024, 2000)
    ready(peer)
    subscriber = shmbus.Subscriber(channel, bus=own_bus.address, start="now")
    try:
        own_bus.private.kill_registry()
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        events = collect(subscriber, count)
        assert not [e for e in events if isinstance(e, Gap)]
        assert check_history(events, 1, count, size) == count
        assert subscriber.statistics["segments_followed"] >= 5
        assert subscriber.statistics["from_publisher"] == subscriber.statistics["segments_followed"]
    finally:
        subscriber.close()


def test_a_channel_continued_by_new_publishers_is_followed(peers, channel):
    """Each `shmbus publish --persistent` continues the channel's history in a segment
    of its own (generation + 1, replacing the departed one's, whose header still says
    active): the subscriber moves there and delivers only the new chunk."""
    def publish(data):
        done = peers.shmbus("publish", "--channel", channel, "--key", "k", "--persistent", "-", input=data)
        assert done.returncode == 0, done.stderr.decode()
        return int(done.stdout.decode().split()[-1])

    assert publish(b"one") == 1
    subscriber = shmbus.Subscriber(channel, bus=peers.address, start="oldest")
    try:
        first = subscriber.next_event(timeout=5)
        assert (first.sequence, bytes(first.payload)) == (1, b"one")
        assert subscriber.next_event(timeout=5) == PublisherLeft("")     # persistent, its publisher gone
        for n, data in [(2, b"two"), (3, b"three, longer")]:
            assert publish(data) == n
            event = subscriber.next_event(timeout=10)
            while isinstance(event, PublisherLeft):
                event = subscriber.next_event(timeout=10)
            assert (event.sequence, bytes(event.payload), event.segment.generation) == (n, data, n)
        assert subscriber.statistics["segments_followed"] == 2
    finally:
        subscriber.close()


def test_a_subscriber_outlives_a_registry_restart(own_bus, channel):
    """The registry is addressed by its well-known name on every call (a dbus-python
    proxy would stay bound to the unique name of the registry it first found): after
    a restart, the subscriber's calls reach the new registry."""
    count, size = 300, 1500
    peer = own_bus.test_peer("paced", channel, count, size, 64 * 1024, 3000)
    ready(peer)
    subscriber = shmbus.Subscriber(channel, bus=own_bus.address, start="now")
    try:
        own_bus.private.kill_registry()
        own_bus.private.start_registry()
        # The Swift publisher registers its current segment with the new registry.
        deadline = time.monotonic() + 20
        while subscriber.registry.current_segment(channel) is None:
            assert time.monotonic() < deadline, "the publisher did not register again"
            time.sleep(0.05)
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        events = collect(subscriber, count)
        assert check_history(events, 1, count, size) == count
        assert subscriber.statistics["segments_followed"] >= 5
        assert subscriber.statistics["from_publisher"] < subscriber.statistics["segments_followed"]
    finally:
        subscriber.close()
