#!/usr/bin/python3
"""A Python client of the example thumbnailer (examples/thumbnailer): sends a raw RGBA
(AB24) image file as a blob (copied into a sealed memfd by the kernel when large,
docs/BLOBS.md) and writes the thumbnail's pixels to OUTPUT.

    /usr/bin/python3 examples/python/thumbnail.py [--bus ADDRESS] [--max-side N] INPUT WIDTH HEIGHT OUTPUT

It prints the thumbnail's size, e.g. "256x192 AB24, 196608 bytes (memfd)".
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import dbus                       # noqa: E402

from shmbus.blob import Blob, InvalidBlob     # noqa: E402

NAME, PATH, IFACE = "org.shmbus.examples.Thumbnailer1", "/org/shmbus/examples/Thumbnailer1", "org.shmbus.examples.Thumbnailer1"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", help="a D-Bus address (default: the session bus)")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("input")
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("output")
    options = parser.parse_args()
    connection = dbus.bus.BusConnection(options.bus) if options.bus else dbus.SessionBus()
    attributes = {"width": options.width, "height": options.height, "stride": options.width * 4, "pixel-format": "AB24"}
    with Blob.from_file(options.input, attributes=attributes) as image:
        thumbnailer = dbus.Interface(connection.get_object(NAME, PATH), IFACE)
        try:
            reply = thumbnailer.Thumbnail(image.to_dbus(), dbus.UInt32(options.max_side), timeout=120, byte_arrays=True)
        except dbus.DBusException as error:
            sys.exit("thumbnail.py: %s: %s" % (error.get_dbus_name(), error.get_dbus_message()))
    try:
        thumbnail = Blob.from_dbus(reply)                 # the reply is checked as an argument would be
    except InvalidBlob as refusal:
        sys.exit("thumbnail.py: the service replied a bad blob: %s" % refusal)
    with thumbnail, thumbnail.view() as pixels:
        image = thumbnail.attributes.image
        if image is None:
            sys.exit("thumbnail.py: the thumbnail has no image attributes")
        with open(options.output, "wb") as out:
            out.write(pixels)
        print("%dx%d %s, %d bytes (%s)" % (image.width, image.height, thumbnail.attributes["pixel-format"], len(pixels),
                                           "inline" if thumbnail.is_inline else "memfd"))


if __name__ == "__main__":
    main()
