"""What every peer process of `make bench-peers` shares: the clock, the checksum, the
blob, percentiles, and the line protocol with run.py.

Every process prints "ready" when it can start, then one line per event; run.py reads
them. Times are CLOCK_MONOTONIC nanoseconds (time.monotonic_ns), one clock for every
process on the machine, the same clock `shmbus bench` uses for its blob part.

The checksum is ShmBus's own benchmark checksum, shmbus_sum64 from
Sources/CShmBusBench/sum64.c, compiled by the Makefile into a shared library and called
through ctypes on the view's address: every subscriber (ShmBus's in Swift, the peers'
in Python) runs the same C function over every byte it received, so the per-byte work is
identical and only the per-message overhead differs.
"""

import argparse
import ctypes
import os
import sys
import time

now = time.monotonic_ns

_library = os.environ.get("PEERS_SUM64", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "peers", "libsum64.so"))
_sum64 = ctypes.CDLL(_library).shmbus_sum64
_sum64.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_sum64.restype = ctypes.c_uint64


def checksum(address_or_bytes, length):
    """shmbus_sum64 over `length` bytes at an address (int) or of a bytes object (no copy)."""
    return _sum64(address_or_bytes, length)


def blob(size):
    """`size` bytes that are not all alike (os.urandom, fixed per process), kept in private
    memory: what each publisher writes into its shared buffer before the clock starts."""
    return os.urandom(size)


def say(*words):
    print(*words, flush=True)


def lines():
    """The lines run.py sends on stdin, without their newline."""
    for line in sys.stdin:
        yield line.rstrip("\n")


def percentile(values, p):
    """The p-th percentile (nearest rank) of a list of numbers."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def arguments(doc, roles, *where):
    """The command line both peers take: a role of `roles`, what the peer needs to find
    its service (`where`: option names, each required), and the sizes, count, rate and
    seconds run.py passes for the part."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("role", choices=sorted(roles))
    for option in where:
        parser.add_argument(option, required=True)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    return parser.parse_args()
