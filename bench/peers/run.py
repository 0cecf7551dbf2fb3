"""`make bench-peers`: ShmBus beside the zero-copy peers iceoryx2 and Zenoh (shared memory),
the same three parts in one invocation, printed as one table (issue 14, "Peers, side by side").

    .build/peers-venv/bin/python bench/peers/run.py --shmbus .build/release/shmbus [--quick] [--json FILE]

What runs, in this order, each side a pair of separate processes (publisher, subscriber):
  1. python_cost.py: what Python itself costs per message here (see that file).
  2. iceoryx2_peer.py, then zenoh_peer.py: blob transfer at each size, notification latency
     (4096-byte chunks at 200/s, blocking waits), 64-byte chunks as fast as the publisher goes.
  3. `shmbus bench --json --only blobs,latency,throughput --sizes ...`: the same parts for ShmBus,
     with D-Bus `ay`, the bare signal and the bare futex wake measured beside it.

The blob part mirrors `shmbus bench` exactly: the publisher has the bytes in its shared buffer
(copied in from private memory before the clock starts), the clock runs from just before the
send/commit to the subscriber process having run shmbus_sum64 over every byte of what it
received; the same repetitions per size (200 below 2 MiB, 40 below 32 MiB, 15 below 128 MiB, 7
below 512 MiB), one warm-up, p50 and p99. The subscriber of each peer sums the bytes where they
are (iceoryx2: in the shared sample) or where the wheel puts them (Zenoh: a bytes copy, the only
read the Python wheel offers). Nothing here asserts a timing; a part whose bytes do not arrive
intact is reported as an error and the run exits non-zero.
"""

import argparse
import atexit
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
from importlib import metadata

import common

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable
STARTED = []  # every process this run starts, ended at exit if still running


def stop_all():
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()


atexit.register(stop_all)


class Worker:
    """One peer process; its stdout lines arrive through a queue so reads can time out."""

    def __init__(self, arguments, timeout=60):
        self.arguments = arguments
        self.process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        STARTED.append(self.process)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.line(timeout)
        if ready != "ready":
            raise RuntimeError(f"{' '.join(arguments[1:3])} did not start: {ready!r}")

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout=120):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{' '.join(self.arguments[1:3])}: no output within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"{' '.join(self.arguments[1:3])} exited ({self.process.wait()})")
        return line

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout=30):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def samples(values, unit):
    scale = {"ms": 1e6, "µs": 1e3, "ns": 1}[unit]
    return {
        "count": len(values),
        "p50": common.percentile(values, 50) / scale,
        "p99": common.percentile(values, 99) / scale,
        "unit": unit,
    }


class Peer:
    """How to start one peer's processes; `n` keeps service names and sockets apart."""

    def __init__(self, name, script):
        self.name, self.script, self.n = name, script, 0

    def pair(self, role, **options):
        self.n += 1
        where = self.where()
        flags = [f"--{key}={value}" for key, value in options.items()]
        subscriber = Worker([PYTHON, os.path.join(HERE, self.script), f"{role}-sub", *where, *flags])
        publisher = Worker([PYTHON, os.path.join(HERE, self.script), f"{role}-pub", *where, *flags])
        return publisher, subscriber


class Iceoryx2(Peer):
    def __init__(self):
        super().__init__("iceoryx2", "iceoryx2_peer.py")

    def where(self):
        return ["--service", f"shmbus-bench-peers/{os.getpid()}/{self.n}"]


class Zenoh(Peer):
    def __init__(self):
        super().__init__("zenoh", "zenoh_peer.py")

    def where(self):
        return ["--endpoint", f"unixsock-stream//tmp/peers-zenoh-{os.getpid()}-{self.n}.sock", "--key", f"shmbus/bench/{self.n}"]


def repetitions(size, quick):
    if quick:
        return 3
    for limit, count in ((2 << 20, 200), (32 << 20, 40), (128 << 20, 15), (512 << 20, 7)):
        if size < limit:
            return count
    return 4


def blob(peer, size, quick):
    warmup, reps = 1, repetitions(size, quick)
    publisher, subscriber = peer.pair("blob", size=size, count=reps + warmup)
    times, errors, shm = [], 0, 0
    for rep in range(reps + warmup):
        publisher.send("go")
        got = subscriber.line().split()
        sent = publisher.line().split()
        if got[3] != sent[3]:
            errors += 1
        if len(got) > 4:
            shm += int(got[4])
        if rep >= warmup:
            times.append(int(got[2]) - int(sent[2]))
    publisher.send("quit")
    publisher.finish()
    subscriber.finish()
    result = {"size": size, "transfer": samples(times, "ms"), "errors": errors}
    if peer.name == "zenoh":
        result["sharedMemorySamples"] = shm
        result["samples"] = reps + warmup
    return result


def latency(peer, count, rate):
    publisher, subscriber = peer.pair("lat", size=4096, count=count, rate=rate)
    publisher.send("go")
    done = publisher.line(timeout=count / rate + 60).split()
    if done[0] != "done":
        raise RuntimeError(f"{peer.name} lat-pub failed: {done}")
    if done[1:] not in ([], ["0", "0"]):
        raise RuntimeError(f"{peer.name} lat-pub: {done[1]} samples reached no subscriber, {done[2]} notifications no listener")
    report = json.loads(subscriber.line(timeout=30))
    publisher.send("quit")
    publisher.finish()
    subscriber.finish()
    values = report["latencies"]
    result = {"count": count, "rate": rate, "size": 4096, "latency": samples(values, "µs"), "received": len(values)}
    for key, name in (("shm", "sharedMemorySamples"), ("timeouts", "waitTimeouts"), ("late", "lateSamples")):
        if key in report:
            result[name] = report[key]
    return result


def flood(peer, seconds, rounds):
    results = []
    for _ in range(rounds):
        publisher, subscriber = peer.pair("flood", size=64, seconds=seconds)
        publisher.send("go")
        _, published, start, finished = publisher.line(timeout=seconds + 60).split()
        words = subscriber.line(timeout=120).split()
        publisher.send("quit")
        publisher.finish()
        subscriber.finish()
        received, missed, ordered, done = int(words[1]), int(words[3]), words[5] == "True", int(words[7])
        published, start, finished = int(published), int(start), int(finished)
        results.append({
            "published": published,
            "publishedPerSecond": published / ((finished - start) / 1e9),
            "receivedPerSecond": received / ((done - start) / 1e9),
            "lagMilliseconds": (done - finished) / 1e6,
            "received": received,
            "missed": missed,
            "inOrder": ordered,
        })
    median = sorted(results, key=lambda r: r["publishedPerSecond"])[len(results) // 2]
    return {**median, "publishedPerSecondByRound": [r["publishedPerSecond"] for r in results], "chunkSize": 64}


def sum_floor(size, quick):
    """shmbus_sum64 over `size` bytes of private memory already mapped and touched, in this
    process: what reading every byte costs with no transfer, no mapping and no page fault."""
    data = common.blob(size)
    times = []
    for rep in range(repetitions(size, quick) + 1):
        start = common.now()
        common.checksum(data, size)
        if rep:
            times.append(common.now() - start)
    return {"size": size, "sum": samples(times, "ms")}


def run_peer(peer, sizes, quick):
    print(f"bench-peers: {peer.name}…", file=sys.stderr, flush=True)
    return {
        "blobs": [blob(peer, size, quick) for size in sizes],
        "latency": latency(peer, 100 if quick else 1000, 500 if quick else 200),
        "throughput": flood(peer, 0.5 if quick else 3, 1 if quick else 3),
    }


def parse_size(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for suffix, scale in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(text)


def size_name(size):
    for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {suffix}"
    return f"{size} B"


# The table ------------------------------------------------------------------------------


def pair(s, digits=3):
    return f"{s['p50']:.{digits}f} / {s['p99']:.{digits}f}"


def table(results):
    shmbus, iox, zen, cost = results["shmbus"], results["iceoryx2"], results["zenoh"], results["python"]
    out = []
    m = shmbus["machine"]
    out.append(
        f"machine: {m['cores']} cores, {m['memoryGiB']:.1f} GiB, {m['cpu']}, Linux {m['kernel']}, {m['busDaemon']}, "
        f"{m['build']} build, shared-memory huge pages: {m['shmemHugePages']}"
    )
    out.append(
        f"peers: iceoryx2 {results['versions']['iceoryx2']}, eclipse-zenoh {results['versions']['eclipse-zenoh']}, "
        f"Python {cost['python']}; load average {results['loadBefore']} before, {results['loadAfter']} after"
    )
    out.append("")
    rows = [["SIZE", "SHMBUS (bus path)", "SHMBUS (futex)", "SHMBUS (futex, reuse)", "ICEORYX2 (Python)", "ZENOH+SHM (Python)", "D-BUS ay",
             "FUTEX/ICEORYX2", "REUSE/ICEORYX2", "FUTEX/ZENOH", "REUSE/ZENOH", "D-BUS/SHMBUS", "SUM ONLY", "COPY FRESH+SUM", "OK"]]
    out.append("1. Blob transfer, publisher holds the bytes in shared memory -> subscriber has summed every byte (ms, p50 / p99)")
    out.append("   ShmBus: bus path (the async iterator, Committed signal) and futex path (the async iterator asleep on the doorbell)")
    out.append("   futex, reuse: the same with Publisher.Options.reuseMemory, four blobs to a segment (shmbus bench's FUTEX REUSE)")
    out.append("   FUTEX/PEER, REUSE/PEER > 1: ShmBus's futex path slower; D-BUS/SHMBUS > 1: ShmBus's bus path faster")
    out.append("   Zenoh: its Python wheel has no buffer view of a ZShm, so its subscriber sums a bytes copy (to_bytes)")
    out.append("   Floors, no transfer: SUM ONLY = the checksum over private memory already mapped (this process);")
    out.append("   COPY FRESH+SUM = shmbus bench's MEMCPY FRESH, a copy into a new mapping and the checksum (a forced copy-out's cost)")
    floors = {f["size"]: f["sum"] for f in results["sumFloor"]}
    by_size = {b["size"]: b for b in shmbus["blobs"]}
    for ib, zb in zip(iox["blobs"], zen["blobs"]):
        size = ib["size"]
        sb = by_size.get(size)
        dbus = pair(sb["dbus"]) if sb and sb.get("dbus") else "cannot (>64 MiB)"
        shm_note = "" if zb["sharedMemorySamples"] == zb["samples"] else f" (SHM {zb['sharedMemorySamples']}/{zb['samples']})"
        ok = all(x == 0 for x in (ib["errors"], zb["errors"], sb["errors"] if sb else 0))
        rows.append([
            size_name(size),
            pair(sb["shmbus"]) if sb else "-",
            pair(sb["shmbusFutex"]) if sb and sb.get("shmbusFutex") else "-",
            pair(sb["shmbusReuse"]) if sb and sb.get("shmbusReuse", {}).get("count") else "-",
            pair(ib["transfer"]),
            pair(zb["transfer"]) + shm_note,
            dbus,
            f"{sb['shmbusFutex']['p50'] / ib['transfer']['p50']:.2f}x" if sb and sb.get("shmbusFutex") else "-",
            f"{sb['shmbusReuse']['p50'] / ib['transfer']['p50']:.2f}x" if sb and sb.get("shmbusReuse", {}).get("count") else "-",
            f"{sb['shmbusFutex']['p50'] / zb['transfer']['p50']:.2f}x" if sb and sb.get("shmbusFutex") else "-",
            f"{sb['shmbusReuse']['p50'] / zb['transfer']['p50']:.2f}x" if sb and sb.get("shmbusReuse", {}).get("count") else "-",
            f"{sb['dbus']['p50'] / sb['shmbus']['p50']:.2f}x" if sb and sb.get("dbus") else "-",
            f"{floors[size]['p50']:.3f}",
            f"{sb['memcpyFresh']['p50']:.3f}" if sb else "-",
            "yes" if ok else "NO",
        ])
    out += format_rows(rows)
    out.append("")
    lat = shmbus["latency"]
    out.append(f"2. Notification latency, 4096-byte chunks at {iox['latency']['rate']}/s, blocking waits (µs, p50 / p99)")
    rows = [["PATH", "P50 / P99", "COUNT", "NOTE"]]
    rows.append(["shmbus, bus signal (iterator)", pair(lat["busPath"], 1), str(lat["busPath"]["count"]), "rounds taking turns with the floors below"])
    rows.append(["shmbus, futex (readBlocking)", pair(lat["futexPath"], 1), str(lat["futexPath"]["count"]), ""])
    rows.append(["shmbus, futex (async iterator)", pair(lat["futexIteratorPath"], 1), str(lat["futexIteratorPath"]["count"]), ""])
    il = iox["latency"]
    rows.append(["iceoryx2, Listener.timed_wait", pair(il["latency"], 1), f"{il['received']}/{il['count']}",
                 f"notify() after send(); {il['waitTimeouts']} waits timed out, {il['lateSamples']} samples after one"])
    zl = zen["latency"]
    rows.append(["zenoh+SHM, Subscriber.recv", pair(zl["latency"], 1), f"{zl['received']}/{zl['count']}", f"{zl['sharedMemorySamples']}/{zl['count']} as SHM"])
    rows.append(["floor: bare D-Bus signal", pair(lat["bareSignal"], 1), str(lat["bareSignal"]["count"]), "no ShmBus"])
    rows.append(["floor: bare futex wake (C-level)", pair(lat["bareFutex"], 1), str(lat["bareFutex"]["count"]), "no ShmBus"])
    out += format_rows(rows)
    out.append("")
    out.append("3. 64-byte chunks as fast as the publisher goes, one subscriber reading every chunk: the median round")
    rows = [["SIDE", "PUBLISHED/S", "RECEIVED/S", "LAG ms", "LOST", "IN ORDER", "ALL ROUNDS (published/s)"]]
    for st in (t for t in shmbus["throughput"] if t["subscribers"] == 1):
        s1 = st["subscriberResults"][0]
        how = f"shmbus, batches of {st['batch']}" if st.get("batch") else "shmbus, one by one"
        rows.append([how, f"{st['publishedPerSecond']:.0f}", f"{s1['receivedPerSecond']:.0f}", f"{s1['lagMilliseconds']:.1f}",
                     str(s1["missed"]), "yes" if s1["inOrder"] else "no", ", ".join(f"{x:.0f}" for x in st["publishedPerSecondByRound"])])
    for name, peer in (("iceoryx2 (Python)", iox), ("zenoh+SHM (Python)", zen)):
        t = peer["throughput"]
        rows.append([name, f"{t['publishedPerSecond']:.0f}", f"{t['receivedPerSecond']:.0f}", f"{t['lagMilliseconds']:.1f}",
                     str(t["missed"]), "yes" if t["inOrder"] else "no", ", ".join(f"{x:.0f}" for x in t["publishedPerSecondByRound"])])
    out += format_rows(rows)
    out.append("")
    out.append("4. What Python itself costs here, per message (no transport)")
    rows = [["WHAT", "FIGURE"]]
    rows.append(["flood subscriber's per-chunk bookkeeping (ctypes read, compare, count)", f"{cost['bookkeepingNs']:.0f} ns"])
    rows.append(["flood publisher's per-chunk Python work (ctypes memmove 64 B + store)", f"{cost['publishNs']:.0f} ns"])
    rows.append(["one ctypes call of shmbus_sum64 on 64 bytes", f"{cost['checksumCallNs']:.0f} ns"])
    rows.append(["pipe round trip between two processes, Python (p50 / p99)", f"{cost['pythonPipeRoundTrip']['p50'] / 1e3:.1f} / {cost['pythonPipeRoundTrip']['p99'] / 1e3:.1f} µs"])
    if "cPipeRoundTrip" in cost:
        rows.append(["pipe round trip between two processes, C (p50 / p99)", f"{cost['cPipeRoundTrip']['p50'] / 1e3:.1f} / {cost['cPipeRoundTrip']['p99'] / 1e3:.1f} µs"])
    out += format_rows(rows)
    return "\n".join(out)


def format_rows(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shmbus", required=True, help="a release build of shmbus")
    parser.add_argument("--sizes", default="4KiB,1MiB,16MiB,64MiB,256MiB")
    parser.add_argument("--quick", action="store_true", help="a few repetitions of each part (checks that everything runs)")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    results = {
        "loadBefore": load(),
        "versions": {name: metadata.version(name) for name in ("iceoryx2", "eclipse-zenoh")},
    }
    print("bench-peers: what Python costs…", file=sys.stderr, flush=True)
    pingpong = os.path.join(os.path.dirname(common._library), "pingpong")
    cost = subprocess.run(
        [PYTHON, os.path.join(HERE, "python_cost.py"), "--rounds", "2000" if args.quick else "20000"]
        + (["--pingpong", pingpong] if os.path.exists(pingpong) else []),
        capture_output=True, text=True, check=True)
    results["python"] = json.loads(cost.stdout)
    results["sumFloor"] = [sum_floor(size, args.quick) for size in sizes]
    results["iceoryx2"] = run_peer(Iceoryx2(), sizes, args.quick)
    results["zenoh"] = run_peer(Zenoh(), sizes, args.quick)
    print("bench-peers: shmbus bench…", file=sys.stderr, flush=True)
    command = [args.shmbus, "bench", "--json", "--only", "blobs,latency,throughput", "--sizes", args.sizes]
    if args.quick:
        command.append("--quick")
    shmbus = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    results["shmbus"] = json.loads(shmbus.stdout)
    results["loadAfter"] = load()
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    print(table(results))
    errors = sum(b["errors"] for peer in ("iceoryx2", "zenoh") for b in results[peer]["blobs"])
    lost = results["iceoryx2"]["throughput"]["missed"] + results["zenoh"]["throughput"]["missed"]
    if shmbus.returncode != 0 or errors or lost:
        print(f"bench-peers: errors: shmbus bench exit {shmbus.returncode}, {errors} corrupt blobs, {lost} chunks lost", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
