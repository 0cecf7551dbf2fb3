#!/usr/bin/python3
"""A python3-dbus client of the Swift interop service (InteropService.swift).

Run by PythonInteropTests.swift with /usr/bin/python3, the interpreter that has
dbus-python:

    interop_client.py calls   ADDRESS NAME PATH
    interop_client.py fd      ADDRESS NAME PATH SIZE
    interop_client.py signal  ADDRESS NAME PATH TOKEN
    interop_client.py errors  ADDRESS NAME PATH
    interop_client.py no-interface ADDRESS NAME PATH

Each prints lines the Swift test asserts on; a failure inside this script prints a
traceback and exits non-zero.
"""
import json
import os
import sys

import dbus

IFACE = "org.shmbus.Test.Interop1"
CHILD_IFACE = "org.shmbus.Test.InteropChild1"


def plain(v):
    """dbus-python values as plain JSON-able Python values."""
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Byte, dbus.Int16, dbus.UInt16, dbus.Int32, dbus.UInt32, dbus.Int64, dbus.UInt64)):
        return int(v)
    if isinstance(v, dbus.Double):
        return float(v)
    if isinstance(v, (dbus.ObjectPath, dbus.Signature, dbus.String, str)):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def service(address, name, path):
    bus = dbus.bus.BusConnection(address)
    # Introspection gives dbus-python the signatures, as for any real service.
    return bus, dbus.Interface(bus.get_object(name, path), IFACE)


def calls(address, name, path):
    bus, iface = service(address, name, path)
    props = dbus.Interface(bus.get_object(name, path), dbus.PROPERTIES_IFACE)
    manager = dbus.Interface(bus.get_object(name, path), "org.freedesktop.DBus.ObjectManager")
    out = {
        "concat": iface.Concat("héllo", " wörld ✓"),
        "numbers": iface.Numbers(250, True, -5, 7, -100000, 4000000000, -9000000000, 18000000000000000000, 2.5),
        "inspect": iface.Inspect(dbus.Dictionary({
            "a": dbus.Int32(5),
            "b": dbus.String("x"),
            "c": dbus.Array(["p", "q"], signature="s"),
            "d": dbus.Struct((dbus.Int32(1), dbus.String("z")), signature="is"),
            "e": dbus.UInt64(7),
            "f": dbus.ObjectPath("/x/y"),
            "g": dbus.Boolean(True),
            "h": dbus.ByteArray(b"\x01\x02"),
        }, signature="sv")),
        "options": iface.Options(),
        "swap": iface.Swap(("abc", 7)),
        "points": iface.Points([(1, 2), (3, 4), (-10, 5)]),
        "xor": iface.Xor(dbus.ByteArray(b"\x00\x01\xff\x5a"), 0x5A),
        "path": iface.PathAndSignature("/a/b", "a{sv}s"),
        "reverse": iface.Reverse(["x", "y", "z"]),
        "version": props.Get(IFACE, "Version"),
        "managed": manager.GetManagedObjects(),
    }
    props.Set(IFACE, "Label", dbus.String("from python", variant_level=1))
    out["label"] = props.Get(IFACE, "Label")
    # One "key json" line per call, in a canonical form the Swift test compares as text.
    for key in sorted(out):
        print(key, json.dumps(plain(out[key]), sort_keys=True, ensure_ascii=False))


def fd(address, name, path, size):
    bus, iface = service(address, name, path)
    data = os.urandom(int(size))
    sent = os.memfd_create("python-interop", os.MFD_CLOEXEC)
    os.write(sent, data)  # leaves the offset at the end: the service must pread
    returned, count = iface.XorFd(dbus.types.UnixFd(sent), dbus.Byte(0x5A))
    got_fd = returned.take()
    link = os.readlink("/proc/self/fd/%d" % got_fd)
    print("sent", data.hex())
    print("count", int(count))
    print("returned", link, "same-file" if os.fstat(got_fd).st_ino == os.fstat(sent).st_ino else "new-file")
    got = os.pread(got_fd, len(data) + 1, 0)
    expected = bytes(b ^ 0x5A for b in data)
    if got == expected:
        print("verdict ok", len(got))
    else:
        first = next((i for i in range(min(len(got), len(expected))) if got[i] != expected[i]), min(len(got), len(expected)))
        print("verdict mismatch", len(got), len(expected), first)


def signal(address, name, path, token):
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib

    bus = dbus.bus.BusConnection(address, mainloop=DBusGMainLoop())
    loop = GLib.MainLoop()

    def changed(what, serial, sender=None, signal_path=None):
        print("signal", sender, signal_path, what, int(serial), flush=True)
        loop.quit()

    def timeout():
        print("timeout", flush=True)
        loop.quit()
        return False

    # add_signal_receiver sends AddMatch and waits for the bus's reply; Ready is
    # queued after it, so the match is in place before the service emits.
    bus.add_signal_receiver(changed, signal_name="Changed", dbus_interface=IFACE, path=path,
                            sender_keyword="sender", path_keyword="signal_path")
    bus.get_object(name, path, introspect=False).Ready(token, dbus_interface=IFACE, signature="s")
    print("me", bus.get_unique_name(), flush=True)
    GLib.timeout_add_seconds(60, timeout)
    loop.run()


def errors(address, name, path):
    bus, iface = service(address, name, path)
    plain_obj = bus.get_object(name, path, introspect=False)

    def attempt(label, f):
        try:
            f()
            print(label, "no-error")
        except dbus.DBusException as e:
            print(label, e.get_dbus_name(), e.get_dbus_message())

    attempt("wrong-signature", lambda: plain_obj.Concat("only one", dbus_interface=IFACE, signature="s"))
    attempt("wrong-types", lambda: plain_obj.Concat("a", dbus.UInt32(5), dbus_interface=IFACE, signature="su"))
    attempt("unknown-method", lambda: plain_obj.NoSuchMethod(dbus_interface=IFACE))
    attempt("unknown-interface", lambda: plain_obj.Concat("a", "b", dbus_interface="org.shmbus.Test.NoSuch"))
    attempt("unknown-object",
            lambda: bus.get_object(name, path + "/no/such/object", introspect=False).Concat("a", "b", dbus_interface=IFACE))
    attempt("read-only", lambda: plain_obj.Set(IFACE, "Version", dbus.String("x", variant_level=1),
                                               dbus_interface=dbus.PROPERTIES_IFACE))
    print("after", iface.Concat("still ", "alive"))


def no_interface(address, name, path):
    """Method calls without an INTERFACE header field, which the specification allows
    ("deliver the message as though it had an arbitrary one of those interfaces")."""
    bus = dbus.bus.BusConnection(address)
    obj = bus.get_object(name, path, introspect=False)
    for label, f in [
        ("Concat", lambda: obj.Concat("a", "b", signature="ss")),
        ("Introspect", lambda: obj.Introspect()[:14]),
        ("Get", lambda: obj.Get(IFACE, "Label", signature="ss")),
        ("GetManagedObjects", lambda: len(obj.GetManagedObjects())),
        ("Ping", lambda: obj.Ping() or ""),
    ]:
        try:
            print(label, "ok", f())
        except dbus.DBusException as e:
            print(label, "error", e.get_dbus_name())


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"calls": calls, "fd": fd, "signal": signal, "errors": errors, "no-interface": no_interface}[command](*args)
