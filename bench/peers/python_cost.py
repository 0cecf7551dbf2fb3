"""What Python itself costs per message on this machine, printed beside the peers' figures
by `make bench-peers` so the reader can see how much of them is the interpreter.

    python python_cost.py [--pingpong PATH_TO_C_PINGPONG]

Prints one JSON object:
  bookkeepingNs   one pass of the flood subscriber's per-chunk loop with no transport at all:
                  read the 8-byte sequence number at an address through ctypes, compare,
                  count (what iceoryx2_peer.py's flood-sub does per chunk besides receive()).
  publishNs       one pass of the flood publisher's per-chunk Python work with no
                  transport: ctypes.memmove of 64 bytes to an address and a ctypes store.
  checksumCallNs  one ctypes call of shmbus_sum64 on 64 bytes (the call, not the bytes).
  pythonPipeRoundTrip / cPipeRoundTrip
                  p50 and p99 (ns) of a one-byte round trip between two processes over a
                  pair of pipes, blocking in read(2): in Python (os.read / os.write, this
                  file) and in C (pingpong.c). Two wake-ups per round trip; half the
                  difference is what Python adds to one blocking wake-up.
"""

import argparse
import ctypes
import json
import os
import subprocess

import common

U64 = ctypes.c_uint64


def per_iteration(function, n):
    start = common.now()
    function(n)
    return (common.now() - start) / n


def bookkeeping(n):
    buffer = (ctypes.c_uint8 * 64)()
    address = ctypes.addressof(buffer)
    from_address = U64.from_address
    expected = received = missed = 0
    for i in range(n):
        from_address(address).value = i  # stands in for the publisher's store
    for _ in range(n):
        value = from_address(address).value
        if value > expected:
            missed += value - expected
        expected = value + 1
        received += 1


def bookkeeping_only(n):
    # the store loop of `bookkeeping` alone, subtracted so that only the reader's side counts
    buffer = (ctypes.c_uint8 * 64)()
    address = ctypes.addressof(buffer)
    from_address = U64.from_address
    for i in range(n):
        from_address(address).value = i


def publish(n):
    buffer = (ctypes.c_uint8 * 64)()
    address = ctypes.addressof(buffer)
    payload = bytes([1]) * 64
    memmove, from_address = ctypes.memmove, U64.from_address
    for i in range(n):
        memmove(address, payload, 64)
        from_address(address).value = i


def checksum_calls(n):
    payload = bytes([1]) * 64
    checksum = common.checksum
    for _ in range(n):
        checksum(payload, 64)


def python_pingpong(rounds):
    ping_r, ping_w = os.pipe()
    pong_r, pong_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ping_w)
        os.close(pong_r)
        while os.read(ping_r, 1):
            os.write(pong_w, b"x")
        os._exit(0)
    os.close(ping_r)
    os.close(pong_w)
    samples = []
    now, read, write = common.now, os.read, os.write
    for _ in range(rounds):
        start = now()
        write(ping_w, b"x")
        read(pong_r, 1)
        samples.append(now() - start)
    os.close(ping_w)
    os.waitpid(child, 0)
    return {"p50": common.percentile(samples, 50), "p99": common.percentile(samples, 99)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pingpong", help="the C pingpong program (pingpong.c, built)")
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    n = 1_000_000
    result = {
        "python": os.sys.version.split()[0],
        "bookkeepingNs": per_iteration(bookkeeping, n) - per_iteration(bookkeeping_only, n),
        "publishNs": per_iteration(publish, n),
        "checksumCallNs": per_iteration(checksum_calls, n),
        "pythonPipeRoundTrip": python_pingpong(args.rounds),
    }
    if args.pingpong:
        p50, p99 = subprocess.run([args.pingpong, str(args.rounds)], capture_output=True, text=True, check=True).stdout.split()
        result["cPipeRoundTrip"] = {"p50": int(p50), "p99": int(p99)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
