#!/usr/bin/python3
"""A ShmBus subscriber in Python, written from docs/FORMAT.md and docs/PROTOCOL.md only.

It finds the channel in the registry (dbus-python), maps the segment read-only
(OpenSegment + mmap), and prints every chunk: sequence, key, length, SHA-256.

    subscriber.py CHANNEL [--bus ADDRESS] [--from oldest|now] [--count N]

dbus-python needs a main loop to receive signals, so this subscriber waits by
looking at the commit word every millisecond; a GLib program would match
Committed (arg0=CHANNEL) instead. Needs Debian's python3-dbus.
"""
import argparse, hashlib, mmap, struct, sys, time
import dbus

REGISTRY, PATH, IFACE = "org.shmbus.Registry1", "/org/shmbus/Registry1", "org.shmbus.Registry1"
HEADER_SIZE, MAGIC, VERSION = 4096, b"SHMBUSG1", 1
COMMITTED_END, LAST_SEQUENCE, STATE, SUCCESSOR = 384, 392, 512, 520
RECORD_MAGIC, OBSOLETE, RETIRED = b"CHNK", 1, 1
MASK = (1 << 64) - 1


def mix64(data, seed):
    """The checksum of docs/FORMAT.md, "Checksums"."""
    h = seed
    for i in range(0, len(data), 8):
        h = ((h ^ int.from_bytes(data[i:i + 8].ljust(8, b"\0"), "little")) * 0x9E3779B97F4A7C15) & MASK
        h ^= h >> 29
    return h


def u64(m, offset):
    return struct.unpack_from("<Q", m, offset)[0]


class BadSegment(Exception):
    pass


def open_segment(registry, name):
    fd, info = registry.OpenSegment(name)
    fd = fd.take()
    m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
    head = m[0:280]  # read the immutable header once, then check the copy
    if head[0:8] != MAGIC or struct.unpack_from("<II", head, 8) != (VERSION, HEADER_SIZE):
        raise BadSegment("not a version 1 segment")
    if mix64(head[0:272], 0x53484D4255534844) != struct.unpack_from("<Q", head, 272)[0]:
        raise BadSegment("header checksum mismatch")
    if struct.unpack_from("<Q", head, 16)[0] > len(m):
        raise BadSegment("header declares more than the file holds")
    return m


def read_record(m, offset, end):
    """Validates the record at offset (below the committed end) and returns its fields."""
    if offset % 64 or offset + 64 > end:
        raise BadSegment("record header at %d does not fit" % offset)
    head = m[offset:offset + 64]
    length, sequence, _, expiry, payload_length = struct.unpack_from("<QQQQQ", head, 8)
    payload_offset, key_length = struct.unpack_from("<IH", head, 48)
    if head[0:4] != RECORD_MAGIC or length < 64 or length % 64 or length > end - offset:
        raise BadSegment("bad record at %d" % offset)
    if key_length > 255 or payload_offset % 64 or payload_offset < 64 + key_length \
            or payload_offset + payload_length > length:
        raise BadSegment("bad key or payload bounds at %d" % offset)
    key = m[offset + 64:offset + 64 + key_length]
    summed = head[0:4] + b"\0\0\0\0" + head[8:56]
    if mix64(key, mix64(summed, 0x53484D4255535243)) != struct.unpack_from("<Q", head, 56)[0]:
        raise BadSegment("record checksum mismatch at %d" % offset)
    flags = struct.unpack_from("<I", m, offset + 4)[0]
    start = offset + payload_offset
    return length, sequence, key.decode("utf-8"), expiry, flags, start, payload_length


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channel")
    parser.add_argument("--bus", help="a bus address (default: the session bus)")
    parser.add_argument("--from", dest="start", default="now", choices=["oldest", "now"])
    parser.add_argument("--count", type=int, default=0, help="stop after N chunks")
    args = parser.parse_args()

    bus = dbus.bus.BusConnection(args.bus) if args.bus else dbus.SessionBus()
    registry = dbus.Interface(bus.get_object(REGISTRY, PATH), IFACE)
    channels = {c[0]: c for c in registry.ListChannels()}
    if args.channel not in channels or not channels[args.channel][2]:
        sys.exit("no channel %r in the registry" % args.channel)
    m = open_segment(registry, str(channels[args.channel][2]))
    position, last = HEADER_SIZE, None
    if args.start == "now":
        position, last = u64(m, COMMITTED_END), u64(m, LAST_SEQUENCE)
    received = 0
    while not args.count or received < args.count:
        state = struct.unpack_from("<I", m, STATE)[0]  # state first: see FORMAT.md "retire"
        end = u64(m, COMMITTED_END)
        if end < HEADER_SIZE or end > len(m) or end % 64:
            raise BadSegment("committed end %d is out of bounds" % end)
        if position >= end:
            if state & RETIRED:  # follow the successor; records it copied are skipped below
                m, position = open_segment(registry, m[SUCCESSOR:SUCCESSOR + 16].hex()), HEADER_SIZE
            else:
                time.sleep(0.001)
            continue
        length, sequence, key, expiry, flags, start, size = read_record(m, position, end)
        position += length
        if last is not None and sequence <= last:
            continue
        if last is not None and sequence > last + 1:
            print("gap: missed %d chunks after sequence %d" % (sequence - last - 1, last))
        last = sequence
        if flags & OBSOLETE or (expiry and expiry <= time.time_ns()):
            continue
        digest = hashlib.sha256(m[start:start + size]).hexdigest()
        print("sequence %d key %s length %d sha256 %s" % (sequence, key or "-", size, digest), flush=True)
        received += 1


if __name__ == "__main__":
    main()
