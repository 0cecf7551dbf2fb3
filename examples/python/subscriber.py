#!/usr/bin/python3
"""A ShmBus subscriber in Python, on the shmbus package (python/README.md).

It finds the channel in the registry, maps its segment read-only, and prints every
chunk: sequence, key, length, SHA-256 of the payload (hashed in place: the payload is
a memoryview of the shared segment, never copied). It follows the channel through
garbage collections and says how many chunks it missed when it fell behind.

    subscriber.py CHANNEL [--bus ADDRESS] [--from oldest|now|SEQUENCE] [--count N]
                  [--wait futex|poll|signal] [--until-publisher-leaves]

Needs Debian's python3-dbus (and python3-gi for --wait signal). Uses the repository's
python/ when run from a checkout, else an installed `shmbus` (pip install ./python).
"""
import argparse, hashlib, os, sys

_checkout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
if os.path.isdir(os.path.join(_checkout, "shmbus")):
    sys.path.insert(0, _checkout)

import shmbus                                                               # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channel")
    parser.add_argument("--bus", help="a bus address (default: the session bus)")
    parser.add_argument("--from", dest="start", default="now", help="oldest, now, or a sequence number")
    parser.add_argument("--count", type=int, default=0, help="stop after N chunks")
    parser.add_argument("--wait", default="futex", choices=["futex", "poll", "signal"])
    parser.add_argument("--until-publisher-leaves", action="store_true",
                        help="exit once the publisher left and everything it committed was printed")
    args = parser.parse_args()
    start = int(args.start) if args.start.isdigit() else args.start
    received = 0
    try:
        with shmbus.Subscriber(args.channel, bus=args.bus, start=start, wait=args.wait,
                               end_when_publisher_leaves=args.until_publisher_leaves) as subscriber:
            for event in subscriber:
                if isinstance(event, shmbus.Gap):
                    print("gap: missed %d chunks after sequence %d" % (event.missed, event.after), flush=True)
                elif isinstance(event, shmbus.PublisherLeft):
                    print("publisher %s left" % (event.owner or "(none)"), flush=True)
                else:
                    digest = hashlib.sha256(event.payload).hexdigest()
                    print("sequence %d key %s length %d sha256 %s"
                          % (event.sequence, event.key or "-", len(event.payload), digest), flush=True)
                    received += 1
                    if args.count and received >= args.count:
                        break
    except shmbus.ShmBusError as error:
        sys.exit("subscriber.py: %s: %s" % (type(error).__name__, error))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
