#!/usr/bin/env python3
"""The Python subscriber beside the Swift one, with the Swift benchmark's own publishers
(`shmbus bench-worker blob-pub` / `flood-pub`, Sources/shmbus/Bench/BenchWorker.swift)
on a private dbus-daemon and the real registry (docs/BENCHMARKS.md).

1. Blob transfer, 1 MiB / 64 MiB / 256 MiB: the publisher has the bytes in its segment
   (in place) -> the subscriber process has read every byte. The Swift subscriber
   (`bench-worker blob-sub`) and this Python one take turns on the same publisher; both
   compute the benchmark's checksum (shmbus_sum64: sixteen Fletcher lanes), Python with
   numpy over the zero-copy view, and each result is compared with the publisher's.
2. 64-byte chunks: the Swift publisher floods for `--seconds`; the Python subscriber
   reads from the oldest chunk and counts what it received and what it missed (exact
   gaps: it cannot keep up with a Swift publisher and says so).

    SHMBUS_BUILD=.build/release python/benchmarks/bench.py [--sizes 1MiB,64MiB,256MiB] [--repetitions N]

Needs numpy in the interpreter (the test venv has it: make test-python).
"""
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import numpy                                                                # noqa: E402

import shmbus                                                               # noqa: E402

MASK = (1 << 64) - 1


def sum64(view):
    """shmbus_sum64 (Sources/CShmBusBench/sum64.c) over a bytes-like view, vectorized."""
    data = numpy.frombuffer(view, dtype=numpy.uint8)
    whole = len(data) // 128 * 128
    words = data[:whole].view(numpy.uint64).reshape(-1, 16)
    rows = words.shape[0]
    sums = words.sum(axis=0, dtype=numpy.uint64)
    # sumOfSums[lane] = sum over rows k of (rows - k) * w[k, lane], modulo 2^64.
    weights = numpy.arange(rows, 0, -1, dtype=numpy.uint64)
    sums_of_sums = numpy.einsum("i,ij->j", weights, words, dtype=numpy.uint64, casting="unsafe")
    h = len(data)
    for lane in range(16):
        h = ((h ^ int(sums[lane])) * 0x9E3779B97F4A7C15) & MASK
        h ^= h >> 29
        h = ((h ^ int(sums_of_sums[lane])) * 0xC2B2AE3D27D4EB4F) & MASK
        h ^= h >> 32
    for b in bytes(data[whole:]):
        h = ((h ^ b) * 0xC2B2AE3D27D4EB4F) & MASK
        h ^= h >> 32
    return h


def monotonic_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)       # BenchClock's clock


def worker_blob_sub(bus, channel, count):
    subscriber = shmbus.Subscriber(channel, bus=bus, start="now", wait="futex")
    print("ready", flush=True)
    received = 0
    for chunk in subscriber.chunks():
        viewed = monotonic_ns()                  # the chunk is here: a view, nothing copied
        checksum = sum64(chunk.payload)
        done = monotonic_ns()
        print("got %d %d %x %d" % (chunk.sequence, done, checksum, viewed), flush=True)
        received += 1
        if received == count:
            break
    subscriber.close()


def worker_flood_sub(bus, channel):
    subscriber = shmbus.Subscriber(channel, bus=bus, start="oldest", wait="futex")
    print("ready", flush=True)
    wanted = []
    threading.Thread(target=lambda: wanted.append(int(sys.stdin.readline().split()[-1])), daemon=True).start()
    received = missed = last = 0
    done = 0
    while not wanted or last < wanted[0]:
        for event in subscriber.next_events(4096, timeout=0.1):
            if isinstance(event, shmbus.Gap):
                missed += event.missed
                last = event.after + event.missed
            elif isinstance(event, shmbus.Chunk):
                received += 1
                last = event.sequence
        done = monotonic_ns()
    print("received %d missed %d done %d" % (received, missed, done), flush=True)
    subscriber.close()


class Worker:
    def __init__(self, args):
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self.line()
        assert self.ready.startswith("ready"), self.ready

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def line(self):
        return self.process.stdout.readline().strip()

    def finish(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def repetitions(size):
    """`shmbus bench`'s repetitions for a size (Bench.swift)."""
    for limit, count in [(2 << 20, 200), (32 << 20, 40), (128 << 20, 15), (512 << 20, 7)]:
        if size < limit:
            return count
    return 4


def size_of(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(text[:-3]) * factor
    return int(text)


def human(size):
    return "%d MiB" % (size >> 20) if size >= 1 << 20 else "%d KiB" % (size >> 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1MiB,64MiB,256MiB")
    parser.add_argument("--repetitions", type=int, default=0, help="default: shmbus bench's for each size")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bus", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "blob-sub":
        return worker_blob_sub(args.bus, args.channel, args.count)
    if args.worker == "flood-sub":
        return worker_flood_sub(args.bus, args.channel)

    from conftest import PrivateBus, binary
    shmbus_bin = binary("shmbus")
    bus = PrivateBus()
    try:
        bus.start_registry()
        me = [sys.executable, os.path.abspath(__file__), "--bus", bus.address]
        print("blob transfer: publisher has the bytes (in place) -> subscriber has read every byte (ms)")
        print("%-8s  %-22s  %-22s  %-18s  %s" % ("SIZE", "SWIFT p50 / p99", "PYTHON p50 / p99", "PYTHON VIEW p50",
                                                 "CHECKSUMS"))
        for size in map(size_of, args.sizes.split(",")):
            reps = args.repetitions or repetitions(size)
            channel = "bench/py-blob-%d" % size
            slot = (size + 8192 + 4095) // 4096 * 4096
            publisher = Worker([shmbus_bin, "bench-worker", "blob-pub", "--bus", bus.address, "--channel", channel,
                                "--size", str(size), "--capacity", str(slot * 2 * (reps + 1) + (4 << 20))])
            results, errors = {}, 0
            for name, command in [("swift", [shmbus_bin, "bench-worker", "blob-sub", "--bus", bus.address,
                                             "--channel", channel, "--count", str(reps + 1)]),
                                  ("python", me + ["--worker", "blob-sub", "--channel", channel,
                                                   "--count", str(reps + 1)])]:
                subscriber = Worker(command)
                samples, views = [], []
                for rep in range(reps + 1):
                    publisher.send("go in-place")
                    got = subscriber.line().split()
                    sent = publisher.line().split()
                    if got[1] != sent[1] or got[3] != sent[3]:
                        errors += 1
                    if rep:
                        samples.append((int(got[2]) - int(sent[2])) / 1e6)
                        if len(got) > 4:
                            views.append((int(got[4]) - int(sent[2])) / 1e6)
                subscriber.finish()
                samples.sort()
                results[name] = "%.3f / %.3f" % (statistics.median(samples), samples[int(0.99 * (len(samples) - 1))])
                if views:
                    results["view"] = "%.3f" % statistics.median(views)
            publisher.send("quit")
            publisher.finish()
            print("%-8s  %-22s  %-22s  %-18s  %s" % (human(size), results["swift"], results["python"], results["view"],
                                                     "all equal" if errors == 0 else "%d differ" % errors), flush=True)

        print("\n64-byte chunks, the Swift publisher as fast as it goes for %.1f s" % args.seconds)
        channel = "bench/py-flood"
        publisher = Worker([shmbus_bin, "bench-worker", "flood-pub", "--bus", bus.address, "--channel", channel,
                            "--size", "64", "--seconds", str(args.seconds)])
        subscriber = Worker(me + ["--worker", "flood-sub", "--channel", channel])
        publisher.send("go")
        published, start, finished, signals, last = map(int, publisher.line().split()[1:])
        subscriber.send("stop %d" % last)
        received, missed, done = (int(w) for w in subscriber.line().split()[1::2])
        publisher.send("quit")
        publisher.finish()
        subscriber.finish()
        seconds = (finished - start) / 1e9
        print("published %d/s; Python subscriber received %d/s (%d chunks, %d missed in exact gaps, %.0f ms behind "
              "at the end)" % (published / seconds, received / ((done - start) / 1e9), received, missed,
                               (done - finished) / 1e6))
    finally:
        bus.stop()


if __name__ == "__main__":
    main()
