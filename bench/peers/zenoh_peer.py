"""The Zenoh side of `make bench-peers`: one process per role, driven by run.py.

    python zenoh_peer.py ROLE --endpoint ENDPOINT --key KEY [--size N] [--count N] [--rate N] [--seconds S]

Zero-copy as Zenoh offers it to Python (eclipse-zenoh 1.10): two peers in one host
(the subscriber listens on ENDPOINT, the publisher connects; no scouting) with shared
memory enabled; the publisher allocates each payload from a `zenoh.shm.ShmProvider`
(POSIX shared memory) and writes into it in place (`ZShmMut.__setitem__` with a slice,
the only way the wheel offers to write one; it copies from a Python bytes object), then
`Publisher.put()`s the buffer: the receiving peer gets a reference to the same shared
memory (the subscriber checks `ZBytes.as_shm()` and reports whether every sample came
that way). Reading is where the wheel stops being zero-copy: `ZShm` and `ZBytes` have no
buffer protocol, only `to_bytes()` / `bytes()`, so the subscriber must copy each payload
into a Python `bytes` before it can read a byte. That copy is inside the clock, and the
table says so. Blocking waits: `Subscriber.recv()` on the default FIFO handler.

Roles, as in iceoryx2_peer.py:
  blob-pub   per "go": alloc SIZE bytes of SHM, copy the blob in (before the clock), clock,
             put; prints "sent N START CHECKSUM".
  blob-sub   per sample: to_bytes() (the forced copy), shmbus_sum64 over it, clock;
             prints "got N DONE CHECKSUM SHM" (SHM 1 if it came as shared memory).
  lat-pub    COUNT chunks of SIZE bytes at RATE per second: clock, alloc, copy in, store
             the clock in the first 8 bytes, put.
  lat-sub    per sample: clock on return from recv(), then reads the stored clock.
  flood-pub  SIZE-byte SHM chunks as fast as it goes for SECONDS, reliable, congestion
             control BLOCK (a slow subscriber slows the publisher; nothing is dropped).
  flood-sub  reads every chunk's sequence number, counts gaps; ends at the sentinel.
"""

import json

import zenoh
from zenoh import shm

import common

SENTINEL = (1 << 64) - 1
POLICY = shm.BlockOn(shm.GarbageCollect())


def open_session(args, listen):
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("transport/shared_memory/enabled", "true")
    if listen:
        conf.insert_json5("listen/endpoints", json.dumps([args.endpoint]))
    else:
        conf.insert_json5("connect/endpoints", json.dumps([args.endpoint]))
    return zenoh.open(conf)


def make_publisher(session, args):
    publisher = session.declare_publisher(
        args.key, congestion_control=zenoh.CongestionControl.BLOCK, reliability=zenoh.Reliability.RELIABLE
    )
    while not publisher.matching_status:
        common.time.sleep(0.01)
    return publisher


def blob_pub(args):
    session = open_session(args, listen=False)
    publisher = make_publisher(session, args)
    provider = shm.ShmProvider.default_backend(3 * args.size + (1 << 20))
    data = common.blob(args.size)
    expected = common.checksum(data, args.size)
    common.say("ready")
    n = 0
    for line in common.lines():
        if not line.startswith("go"):
            break
        buffer = provider.alloc(args.size, policy=POLICY)
        buffer[0 : args.size] = data
        start = common.now()
        publisher.put(buffer)
        n += 1
        common.say("sent", n, start, format(expected, "x"))
    session.close()


def blob_sub(args):
    session = open_session(args, listen=True)
    subscriber = session.declare_subscriber(args.key)
    common.say("ready")
    for n in range(1, args.count + 1):
        sample = subscriber.recv()
        payload = sample.payload
        came_as_shm = payload.as_shm() is not None
        data = payload.to_bytes()
        total = common.checksum(data, len(data))
        done = common.now()
        del sample, payload, data
        common.say("got", n, done, format(total, "x"), int(came_as_shm))
    session.close()


def lat_pub(args):
    session = open_session(args, listen=False)
    publisher = make_publisher(session, args)
    provider = shm.ShmProvider.default_backend(1 << 20)
    payload = bytes([7]) * args.size
    common.say("ready")
    next(common.lines())
    begin = common.now()
    for i in range(args.count):
        sent = common.now()
        buffer = provider.alloc(args.size, policy=POLICY)
        buffer[0 : args.size] = payload
        buffer[0:8] = sent.to_bytes(8, "little")
        publisher.put(buffer)
        pause = begin + (i + 1) * 1_000_000_000 // args.rate - common.now()
        if pause > 0:
            common.time.sleep(pause / 1e9)
    common.say("done")
    next(common.lines())
    session.close()


def lat_sub(args):
    session = open_session(args, listen=True)
    subscriber = session.declare_subscriber(args.key)
    common.say("ready")
    latencies = []
    shm_samples = 0
    while len(latencies) < args.count:
        sample = subscriber.recv()
        arrived = common.now()
        payload = sample.payload
        shm_samples += payload.as_shm() is not None
        latencies.append(arrived - int.from_bytes(payload.to_bytes()[:8], "little"))
    common.say(json.dumps({"latencies": latencies, "shm": shm_samples}))
    session.close()


def flood_pub(args):
    session = open_session(args, listen=False)
    publisher = make_publisher(session, args)
    provider = shm.ShmProvider.default_backend(16 << 20)
    payload = bytes([1]) * (args.size - 8)
    common.say("ready")
    next(common.lines())
    start = common.now()
    end = start + int(args.seconds * 1e9)
    published = 0
    alloc, put, size = provider.alloc, publisher.put, args.size
    while common.now() < end:
        for _ in range(1000):
            buffer = alloc(size, policy=POLICY)
            buffer[0:8] = published.to_bytes(8, "little")
            buffer[8:size] = payload
            put(buffer)
            published += 1
    finished = common.now()
    buffer = alloc(size, policy=POLICY)
    buffer[0:8] = SENTINEL.to_bytes(8, "little")
    buffer[8:size] = payload
    put(buffer)
    common.say("published", published, start, finished)
    next(common.lines())
    session.close()


def flood_sub(args):
    session = open_session(args, listen=True)
    subscriber = session.declare_subscriber(args.key)
    common.say("ready")
    received = missed = expected = 0
    ordered = True
    recv = subscriber.recv
    while True:
        value = int.from_bytes(recv().payload.to_bytes()[:8], "little")
        if value == SENTINEL:
            break
        if value < expected:
            ordered = False
        elif value > expected:
            missed += value - expected
        expected = value + 1
        received += 1
    done = common.now()
    common.say("received", received, "missed", missed, "ordered", ordered, "done", done)
    session.close()


ROLES = {
    "blob-pub": blob_pub,
    "blob-sub": blob_sub,
    "lat-pub": lat_pub,
    "lat-sub": lat_sub,
    "flood-pub": flood_pub,
    "flood-sub": flood_sub,
}


def main():
    args = common.arguments(__doc__, ROLES, "--endpoint", "--key")
    zenoh.init_log_from_env_or("error")
    ROLES[args.role](args)


if __name__ == "__main__":
    main()
