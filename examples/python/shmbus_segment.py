#!/usr/bin/python3
"""Reads ShmBus segments: a command line over the shmbus package's format reader
(python/shmbus/segment.py, written from docs/FORMAT.md alone, version 1).

Standard library only (os, fcntl, mmap, struct); no D-Bus. It uses the repository's
python/ when run from a checkout, else an installed `shmbus` (pip install ./python). Give it segments as open
file descriptors or as paths (for example /proc/PID/fd/N of a process that holds one):
it checks the seals, maps each read-only, validates the header and every record
(bounds, checksums), and lists the chunks. It follows nothing across segments by
itself; pass every segment of a channel to read its lineage.

    shmbus_segment.py [--no-seals] [--payloads] [--latest KEY] SEGMENT...
    shmbus_segment.py --mix64 SEED:HEX...

Prints one JSON object per segment (header, live state, every record with its
payload's SHA-256 and its attributes), or with --latest the newest live chunk of KEY over the segments
given, the first one being the channel's current segment (FORMAT.md, "The newest chunk
of a key"). An invalid segment is reported as "shmbus_segment.py: <ErrorClass>: ..." on
stderr with exit status 2.

The library (python/README.md):

    from shmbus import Segment
    with Segment("/proc/1234/fd/7") as segment:
        for chunk in segment.chunks():          # live chunks, in file order
            print(chunk.sequence, chunk.key, bytes(chunk.payload[:16]))
"""
import argparse, hashlib, json, os, sys, time

# The repository's package first, so that the example and the checkout agree.
_checkout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
if os.path.isdir(os.path.join(_checkout, "shmbus")):
    sys.path.insert(0, _checkout)

from shmbus.format import mix64                                             # noqa: E402
from shmbus.segment import Segment, newest_chunk                            # noqa: E402
from shmbus.errors import SegmentError                                      # noqa: E402


def _json_attributes(chunk):
    """The attributes as FORMAT.md's JSON column has them: NaN and infinities as strings."""
    out = {}
    for name, value in chunk.attributes.items():
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            value = "nan" if value != value else ("inf" if value > 0 else "-inf")
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _describe(segment, payloads=False):
    state = segment.live_state()
    now = time.clock_gettime_ns(time.CLOCK_REALTIME)
    records = [{
        "offset": r.offset, "sequence": r.sequence, "key": r.key, "length": len(r.payload),
        "sha256": hashlib.sha256(r.payload).hexdigest(), "timestamp": r.timestamp, "expiry": r.expiry,
        "obsolete": r.obsolete, "expired": r.expired(now), "attributes": _json_attributes(r),
        **({"payload": r.payload.hex()} if payloads else {}),
    } for r in segment.records()]
    return {
        "segment": segment.name, "channel": segment.channel, "generation": segment.generation,
        "base_sequence": segment.base_sequence, "capacity": segment.capacity, "writer_pid": segment.writer_pid,
        "committed_end": state.committed_end, "last_sequence": state.last_sequence,
        "record_count": state.record_count, "retired": state.retired, "successor": state.successor,
        "records": records,
    }


def _source(text):
    return int(text) if text.isdigit() else text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("segments", nargs="*", help="a descriptor number or a path")
    parser.add_argument("--no-seals", action="store_true", help="accept files without the seals (copies)")
    parser.add_argument("--latest", metavar="KEY", help="print only the newest live chunk of KEY")
    parser.add_argument("--payloads", action="store_true", help="include each payload in hex")
    parser.add_argument("--mix64", nargs="+", metavar="SEED:HEX", help="print mix64 of HEX bytes from SEED")
    args = parser.parse_args(argv)
    name = os.path.basename(sys.argv[0])
    if args.mix64:
        for item in args.mix64:
            seed, _, data = item.partition(":")
            print("0x%016x" % mix64(bytes.fromhex(data), int(seed, 0)))
        return 0
    try:
        segments = [Segment(_source(s), require_seals=not args.no_seals) for s in args.segments]
        if args.latest is not None:
            segment, chunk = newest_chunk(segments, args.latest, current=segments[0].name if segments else None)
            print(json.dumps(None if chunk is None else {
                "segment": segment.name, "sequence": chunk.sequence, "key": chunk.key,
                "sha256": hashlib.sha256(chunk.payload).hexdigest(), "attributes": _json_attributes(chunk)}))
        else:
            for segment in segments:
                print(json.dumps(_describe(segment, args.payloads)))
    except SegmentError as error:
        print("%s: %s: %s" % (name, type(error).__name__, error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
