#!/usr/bin/python3
"""Camera frames as numpy arrays, straight from shared memory: a consumer of the
camera example (examples/camera-publisher: channel camera/0, key "frame", 640x480
RGBA) on the shmbus package (python/README.md).

Each frame's shape and dtype come from the chunk's attributes (width, height, stride,
pixel-format; docs/FORMAT.md, "Attributes"), not from this program: ``chunk.array()``
is a read-only view of the publisher's sealed segment, so a 1.2 MB frame costs no
allocation. The program sums each frame's red channel (reading every pixel in place),
prints its frame rate once a second, and at the end the bytes it viewed in place
beside the memory it did allocate: tracemalloc's peak (what Python and numpy
allocated while reading) and the growth of its private resident memory (RssAnon), with
the segment's pages it mapped (RssShmem) shown apart: those are the publisher's.

    camera_frames.py [--bus ADDRESS] [--channel camera/0] [--key frame] [--frames N]
                     [--from now|oldest] [--json]

Needs numpy and Debian's python3-dbus. Uses the repository's python/ when run from a
checkout, else an installed `shmbus` (pip install ./python).
"""
import argparse, json, os, sys, time, tracemalloc

_checkout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
if os.path.isdir(os.path.join(_checkout, "shmbus")):
    sys.path.insert(0, _checkout)

import numpy                                                                # noqa: E402
import shmbus                                                               # noqa: E402


def memory():
    """This process's resident memory by kind, in bytes (/proc/self/status)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssShmem"):
                out[name] = int(value.split()[0]) * 1024
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", help="a bus address (default: the session bus)")
    parser.add_argument("--channel", default="camera/0")
    parser.add_argument("--key", default="frame")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (default: when the publisher leaves)")
    parser.add_argument("--from", dest="start", default="now", choices=["now", "oldest"])
    parser.add_argument("--json", action="store_true", help="end with the figures as one JSON object")
    args = parser.parse_args()

    frames, viewed, log = 0, 0, []
    try:
        with shmbus.Subscriber(args.channel, bus=args.bus, start=args.start,
                               end_when_publisher_leaves=args.frames == 0) as subscriber:
            # Measured from here: what reading frames costs, not what connecting did.
            before = memory()
            tracemalloc.start()
            started = last_report = time.monotonic()
            reported = 0
            for chunk in subscriber.chunks():
                if chunk.key != args.key:
                    continue
                pixels = chunk.array()          # (height, width, 4) uint8 for AB24: a view, no copy
                if frames == 0:
                    image = chunk.image_layout
                    print("%s: %dx%d %r, stride %d -> numpy %s %s, read-only view: %s" % (
                        args.channel, image.width, image.height, image.pixel_format, image.stride,
                        pixels.shape, pixels.dtype, not pixels.flags.writeable and not pixels.flags.owndata),
                        flush=True)
                # The publisher writes its frame number into the first pixel (a u32).
                number = int(pixels[0, 0].view("<u4")[0]) if pixels.ndim == 3 and pixels.shape[2] == 4 else -1
                red = int(pixels[..., 0].sum(dtype=numpy.uint64))
                log.append([chunk.sequence, number, red])
                frames += 1
                viewed += pixels.nbytes
                del pixels, chunk                # the next frame's view replaces it
                now = time.monotonic()
                if now - last_report >= 1.0:
                    print("%.1f frames/s (frame %d)" % ((frames - reported) / (now - last_report), number), flush=True)
                    last_report, reported = now, frames
                if args.frames and frames >= args.frames:
                    break
            skipped = subscriber.cursor.skipped
    except shmbus.NotAnArray as error:
        sys.exit("camera_frames.py: the frames do not say what they hold: %s" % error)
    except shmbus.ShmBusError as error:
        sys.exit("camera_frames.py: %s: %s" % (type(error).__name__, error))
    elapsed = time.monotonic() - started
    after = memory()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures = {
        "frames": frames, "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 2) if elapsed else 0.0,
        "skipped": skipped, "viewed_in_place": viewed, "tracemalloc_peak": peak,
        "rss_anon_growth": after["RssAnon"] - before["RssAnon"],
        "rss_shmem_growth": after["RssShmem"] - before["RssShmem"], "log": log,
    }
    print("%d frames in %.2f s: %.1f frames/s (%d replaced before they were read)" % (
        frames, elapsed, figures["fps"], skipped))
    print("viewed in place: %d bytes; allocated while reading: %d bytes (tracemalloc peak); private memory grew by "
          "%d bytes (RssAnon); the publisher's segment pages mapped: %d bytes (RssShmem)" % (
              viewed, peak, figures["rss_anon_growth"], figures["rss_shmem_growth"]))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
