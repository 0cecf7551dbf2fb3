#!/usr/bin/python3
"""org.shmbus.testing.BlobEcho1 (dbus/testing/org.shmbus.testing.BlobEcho1.xml) served
from Python with dbus-python: how a Python service takes and returns blobs
(docs/BLOBS.md). The tests call it from Swift's generated proxy.

    /usr/bin/python3 examples/python/blob_echo_service.py [--bus ADDRESS]

It prints "ready UNIQUE-NAME" once serving at /org/shmbus/testing/BlobEcho1, and
exits when stdin closes or the bus goes away.
"""
import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import dbus                      # noqa: E402
import dbus.mainloop.glib        # noqa: E402
import dbus.service              # noqa: E402
from gi.repository import GLib   # noqa: E402

from shmbus import format as F  # noqa: E402
from shmbus.blob import Blob, SIGNATURE, INLINE_LIMIT  # noqa: E402

IFACE = "org.shmbus.testing.BlobEcho1"
PATH = "/org/shmbus/testing/BlobEcho1"


class BlobEcho(dbus.service.Object):
    # byte_arrays: an inline blob's ay arrives as bytes, not a list of dbus.Byte.
    @dbus.service.method(IFACE, in_signature=SIGNATURE, out_signature=SIGNATURE, byte_arrays=True)
    def Echo(self, blob):
        """The blob as it came, after the receiver's checks: a memfd goes back as it is."""
        with Blob.argument(blob) as received:
            return received.to_dbus()

    @dbus.service.method(IFACE, in_signature=SIGNATURE, out_signature=SIGNATURE, byte_arrays=True)
    def Copy(self, blob):
        """A new blob of this process's own, same bytes, attributes and form."""
        with Blob.argument(blob) as received, received.view() as payload:
            threshold = INLINE_LIMIT + 1 if received.is_inline else 0
            with Blob.from_bytes(payload, dict(received.attributes), threshold=threshold) as copy:
                return copy.to_dbus()

    @dbus.service.method(IFACE, in_signature="ay", out_signature="ay", byte_arrays=True)
    def EchoBytes(self, data):
        return dbus.ByteArray(data)

    @dbus.service.method(IFACE, in_signature=SIGNATURE, out_signature="bbtta{sv}", byte_arrays=True)
    def Inspect(self, blob):
        with Blob.argument(blob) as received, received.view() as payload:
            attributes = received.to_dbus()[0]
            return (received.is_inline, received.immutable, dbus.UInt64(received.length),
                    dbus.UInt64(F.mix64(bytes(payload), 0)), attributes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", help="a D-Bus address (default: the session bus)")
    options = parser.parse_args()
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    connection = dbus.bus.BusConnection(options.bus) if options.bus else dbus.SessionBus()
    BlobEcho(connection, PATH)
    loop = GLib.MainLoop()
    connection.call_on_disconnection(lambda _: loop.quit())

    def wait_for_stdin():
        sys.stdin.read()
        GLib.idle_add(loop.quit)
    threading.Thread(target=wait_for_stdin, daemon=True).start()
    print("ready", connection.get_unique_name(), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
