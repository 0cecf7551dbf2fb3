#!/usr/bin/python3
"""A GLib (GDBus, through PyGObject) peer of the Swift D-Bus layer.

GDBus is a D-Bus implementation of its own (its own marshaller, its own message
routing, its own ObjectManager client), so everything here checks the Swift layer
against code that shares nothing with libdbus. Run with /usr/bin/python3, the
interpreter that has python3-gi:

    gio_peer.py serve   ADDRESS NAME PATH
        A GDBus service (interface org.shmbus.Test.GioPeer1) that the Swift tests call
        as a client. Prints "ready UNIQUE-NAME" once NAME is owned; runs until stdin
        closes.
    gio_peer.py watch   ADDRESS NAME ROOT
        A GDBusObjectManagerClient on the Swift object manager at ROOT. Prints
        "owner JSON" (the name owner GLib resolved) and "objects JSON" (its initial
        view), then one line per event
        ('added ["PATH", INTERFACES]', 'removed ["PATH"]',
        'changed ["PATH", "INTERFACE", CHANGED, INVALIDATED]', all JSON);
        when stdin closes prints "final JSON" and exits.
    gio_peer.py gates   ADDRESS NAME PATH
        A GDBus client of the Swift test service's Wait/Release methods (see
        ServiceEdgeInteropTests.swift): blocked handlers released in another order
        than they were called, with many other calls in flight. Prints one line per
        step and "verdict ok" or "verdict ...".
    gio_peer.py noreply ADDRESS NAME PATH INTERFACE METHOD TOKEN
        Calls METHOD(s TOKEN) without a callback, which GDBus sends with the
        NO_REPLY_EXPECTED flag, flushes and exits.
    gio_peer.py badfd   ADDRESS NAME PATH INTERFACE METHOD
        Calls METHOD(h, y) with a handle that points past the message's (empty) fd
        list, which dbus-daemon forwards. Prints "error NAME", "reply SIGNATURE", or
        "no-answer" when nothing came back within 60 s.
    gio_peer.py big     ADDRESS NAME PATH INTERFACE SIZE
        Sends SIZE random bytes as 'ay' to the Swift method Xor(ay data, y key) ->
        (ay data, t size) and checks the reply byte for byte. Prints "verdict ok SIZE"
        or the mismatch.

A failure inside this script prints a traceback and exits non-zero.
"""
import json
import os
import sys
import threading
import time

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

IFACE = "org.shmbus.Test.GioPeer1"
PROPS = "org.freedesktop.DBus.Properties"

XML = """
<node>
  <interface name="org.shmbus.Test.GioPeer1">
    <method name="Echo">
      <arg name="value" type="v" direction="in"/>
      <arg name="same" type="v" direction="out"/>
      <arg name="type" type="s" direction="out"/>
      <arg name="text" type="s" direction="out"/>
    </method>
    <method name="Sample">
      <arg name="sample" type="a{sv}" direction="out"/>
    </method>
    <method name="Empties">
      <arg name="structs" type="a(tt)" direction="out"/>
      <arg name="options" type="a{sv}" direction="out"/>
      <arg name="strings" type="as" direction="out"/>
      <arg name="bytes" type="ay" direction="out"/>
      <arg name="wrapped" type="(ai)" direction="out"/>
      <arg name="numbers" type="at" direction="out"/>
    </method>
    <method name="Fail">
      <arg name="name" type="s" direction="in"/>
      <arg name="message" type="s" direction="in"/>
    </method>
    <method name="Delay">
      <arg name="ms" type="u" direction="in"/>
      <arg name="same" type="u" direction="out"/>
    </method>
    <method name="Hold">
      <arg name="count" type="u" direction="in"/>
      <arg name="token" type="u" direction="in"/>
      <arg name="same" type="u" direction="out"/>
      <arg name="arrival" type="u" direction="out"/>
    </method>
    <method name="Never"/>
    <method name="Transform">
      <arg name="fd" type="h" direction="in"/>
      <arg name="key" type="y" direction="in"/>
      <arg name="transformed" type="h" direction="out"/>
      <arg name="size" type="t" direction="out"/>
      <arg name="link" type="s" direction="out"/>
    </method>
    <method name="Files">
      <arg name="count" type="u" direction="in"/>
      <arg name="files" type="a{sh}" direction="out"/>
    </method>
    <method name="Describe">
      <arg name="fds" type="ah" direction="in"/>
      <arg name="files" type="a(ts)" direction="out"/>
    </method>
    <method name="DanglingFd">
      <arg name="fd" type="h" direction="out"/>
    </method>
    <method name="Emit">
      <arg name="tag" type="s" direction="in"/>
      <arg name="count" type="u" direction="in"/>
    </method>
    <method name="Whisper">
      <arg name="text" type="s" direction="in"/>
    </method>
    <signal name="Tick">
      <arg name="tag" type="s"/>
      <arg name="n" type="u"/>
    </signal>
    <signal name="Private">
      <arg name="text" type="s"/>
    </signal>
    <property name="Calls" type="u" access="read"/>
    <property name="Title" type="s" access="readwrite"/>
  </interface>
</node>
"""


def connect(address):
    flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)


def quit_when_stdin_closes(loop, before=None):
    """Stops `loop` once the parent closes our stdin (or dies)."""

    def reader():
        sys.stdin.buffer.read()
        GLib.idle_add(lambda: (before and before(), loop.quit(), False)[-1])

    threading.Thread(target=reader, daemon=True).start()
    # Never outlive a stuck test for long (a test that dies closes our stdin at once;
    # this is for one that hangs). Generous: a test that normally takes a second can
    # take a minute on a shared two-core machine running the whole suite, or under TSan.
    GLib.timeout_add_seconds(300, lambda: (print("timeout", flush=True), loop.quit(), False)[-1])


def memfd(name, content):
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.pwrite(fd, content, 0)
    return fd


def read_all(fd):
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


# MARK: serve


def serve(address, name, path):
    conn = connect(address)
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    state = {"calls": 0, "title": "gio"}
    never = []  # invocations deliberately left unanswered
    held = []  # Hold invocations waiting for the rest of their group

    def sample():
        # One of each basic type, and containers GLib marshals itself.
        return {
            "y": GLib.Variant("y", 200),
            "b": GLib.Variant("b", True),
            "n": GLib.Variant("n", -12345),
            "q": GLib.Variant("q", 54321),
            "i": GLib.Variant("i", -2000000000),
            "u": GLib.Variant("u", 4000000000),
            "x": GLib.Variant("x", -9000000000000000000),
            "t": GLib.Variant("t", 18000000000000000000),
            "d": GLib.Variant("d", -0.125),
            "s": GLib.Variant("s", "grüße ✓"),
            "o": GLib.Variant("o", "/org/gtk/peer"),
            "g": GLib.Variant("g", "a{sv}(ii)"),
            "as": GLib.Variant("as", ["one", "", "three"]),
            "ay": GLib.Variant.new_from_bytes(GLib.VariantType("ay"), GLib.Bytes.new(b"\x00\x01\xfe\xff"), True),
            "struct": GLib.Variant("(sxb)", ("s", -1, False)),
            "dict": GLib.Variant("a{ss}", {"k": "v"}),
            "aai": GLib.Variant("aai", [[1, 2], [], [3]]),
            "deep": GLib.Variant("v", GLib.Variant("v", GLib.Variant("s", "inner"))),
            "tuples": GLib.Variant("a(yt)", [(1, 2), (3, 4)]),
        }

    def method(conn, sender, object_path, interface, member, params, invocation):
        state["calls"] += 1
        if member == "Echo":
            value = params.get_child_value(0).get_variant()
            invocation.return_value(GLib.Variant("(vss)", (value, value.get_type_string(), value.print_(True))))
        elif member == "Sample":
            invocation.return_value(GLib.Variant("(a{sv})", (sample(),)))
        elif member == "Empties":
            invocation.return_value(GLib.Variant("(a(tt)a{sv}asay(ai)at)", ([], {}, [], b"", ([],), [])))
        elif member == "Fail":
            error_name, message = params.unpack()
            invocation.return_dbus_error(error_name, message)
        elif member == "Delay":
            (ms,) = params.unpack()

            def later():
                invocation.return_value(GLib.Variant("(u)", (ms,)))
                return False

            GLib.timeout_add(ms, later)
        elif member == "Hold":
            # Held until `count` calls have arrived, then answered last-come first:
            # out of order by construction, however the machine schedules the callers.
            count, token = params.unpack()
            held.append((invocation, token, len(held)))
            if len(held) >= count:
                for waiting, same, arrival in reversed(held):
                    waiting.return_value(GLib.Variant("(uu)", (same, arrival)))
                held.clear()
        elif member == "Never":
            never.append(invocation)
        elif member == "Transform":
            index, key = params.unpack()
            fd = invocation.get_message().get_unix_fd_list().get(index)
            try:
                link = os.readlink("/proc/self/fd/%d" % fd)
                content = read_all(fd)
            finally:
                os.close(fd)
            out = memfd("gio-transformed", bytes(b ^ key for b in content))
            invocation.return_value_with_unix_fd_list(
                GLib.Variant("(hts)", (0, len(content), link)), Gio.UnixFDList.new_from_array([out]))
        elif member == "Files":
            (count,) = params.unpack()
            fds = [memfd("gio-file-%d" % i, ("file %d;" % i).encode() * (i + 1)) for i in range(count)]
            files = {"f%d" % i: i for i in range(count)}
            invocation.return_value_with_unix_fd_list(GLib.Variant("(a{sh})", (files,)), Gio.UnixFDList.new_from_array(fds))
        elif member == "Describe":
            (indices,) = params.unpack()
            fd_list = invocation.get_message().get_unix_fd_list()
            described = []
            for index in indices:
                fd = fd_list.get(index)
                try:
                    described.append((os.fstat(fd).st_size, os.readlink("/proc/self/fd/%d" % fd)))
                finally:
                    os.close(fd)
            invocation.return_value(GLib.Variant("(a(ts))", (described,)))
        elif member == "DanglingFd":
            # A handle that points past the (absent) fd list of the reply.
            invocation.return_value(GLib.Variant("(h)", (5,)))
        elif member == "Emit":
            tag, count = params.unpack()
            for n in range(count):
                conn.emit_signal(None, object_path, IFACE, "Tick", GLib.Variant("(su)", (tag, n)))
            invocation.return_value(None)
        elif member == "Whisper":
            (text,) = params.unpack()
            # Unicast to the caller only, then a broadcast marker.
            conn.emit_signal(sender, object_path, IFACE, "Private", GLib.Variant("(s)", (text,)))
            conn.emit_signal(None, object_path, IFACE, "Tick", GLib.Variant("(su)", ("after " + text, 0)))
            invocation.return_value(None)
        else:
            invocation.return_dbus_error("org.freedesktop.DBus.Error.UnknownMethod", member)

    def get_property(conn, sender, object_path, interface, prop):
        if prop == "Calls":
            return GLib.Variant("u", state["calls"])
        return GLib.Variant("s", state["title"])

    def set_property(conn, sender, object_path, interface, prop, value):
        state["title"] = value.unpack()
        conn.emit_signal(
            None, object_path, PROPS, "PropertiesChanged",
            GLib.Variant("(sa{sv}as)", (IFACE, {"Title": GLib.Variant("s", state["title"])}, [])))
        return True

    conn.register_object(path, info, method, get_property, set_property)
    reply = conn.call_sync(
        "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
        GLib.Variant("(su)", (name, 4)), GLib.VariantType("(u)"), Gio.DBusCallFlags.NONE, 60000, None)
    if reply.unpack()[0] != 1:
        raise SystemExit("RequestName(%s) replied %d" % (name, reply.unpack()[0]))
    loop = GLib.MainLoop()
    quit_when_stdin_closes(loop)
    print("ready", conn.get_unique_name(), flush=True)
    loop.run()
    conn.flush_sync(None)


# MARK: watch


def plain(variant):
    return variant.unpack() if variant is not None else None


def interfaces_of(obj):
    """An object's interfaces and their cached properties, as GLib's proxies see them."""
    return {
        proxy.get_interface_name(): {
            prop: plain(proxy.get_cached_property(prop)) for prop in proxy.get_cached_property_names()
        }
        for proxy in obj.get_interfaces()
    }


def view(manager):
    return {obj.get_object_path(): interfaces_of(obj) for obj in manager.get_objects()}


def watch(address, name, root):
    conn = connect(address)
    manager = Gio.DBusObjectManagerClient.new_sync(
        conn, Gio.DBusObjectManagerClientFlags.DO_NOT_AUTO_START, name, root, None, None, None)

    def emit(word, value):
        print(word, json.dumps(value, sort_keys=True, ensure_ascii=False), flush=True)

    def added(_, obj):
        emit("added", [obj.get_object_path(), interfaces_of(obj)])

    def removed(_, obj):
        emit("removed", [obj.get_object_path()])

    def changed(_, obj, proxy, changed_properties, invalidated):
        emit("changed", [obj.get_object_path(), proxy.get_interface_name(), changed_properties.unpack(), list(invalidated)])

    manager.connect("object-added", added)
    manager.connect("object-removed", removed)
    manager.connect("interface-proxy-properties-changed", changed)
    emit("owner", manager.get_name_owner())
    emit("objects", view(manager))
    loop = GLib.MainLoop()
    quit_when_stdin_closes(loop, lambda: emit("final", view(manager)))
    loop.run()


# MARK: gates


def gates(address, name, path):
    conn = connect(address)
    iface = "org.shmbus.Test.Edge1"
    loop = GLib.MainLoop()
    log = []
    pending = {"count": 0}
    problems = []

    def call(member, args, signature, done):
        def finished(source, result):
            try:
                reply = conn.call_finish(result)
                done(reply.unpack())
            except GLib.Error as e:
                problems.append("%s%r failed: %s" % (member, args, e.message))
                loop.quit()

        # Generous: Wait('b') stays blocked through the whole exchange, and the test
        # machines are shared; these timeouts only keep a broken service from hanging.
        conn.call(name, path, iface, member, GLib.Variant(signature, args), None, Gio.DBusCallFlags.NONE, 120000, None,
                  finished)

    # Three handlers block in Wait until Release names them; 300 quick Adds are sent
    # while they block and must all come back right.
    def waited(token):
        def done(reply):
            log.append("waited " + reply[0])
            step()

        return done

    for token in ["a", "b", "c"]:
        call("Wait", (token,), "(s)", waited(token))
        log.append("sent " + token)

    adds = {"ok": 0}

    def added(expected):
        def done(reply):
            if reply[0] != expected:
                problems.append("Add replied %r, expected %r" % (reply[0], expected))
            adds["ok"] += 1

        return done

    for i in range(300):
        call("Add", (i, 1000 * i), "(ii)", added(1001 * i))

    order = ["c", "a", "b"]

    def step():
        if order:
            token = order.pop(0)
            log.append("release " + token)
            call("Release", (token,), "(s)", lambda reply: None)
        else:
            loop.quit()

    # Release the first gate only once every Add has been answered: the Adds got
    # through while three handlers were blocked.
    def first_release():
        if adds["ok"] == 300 or problems:
            step()
            return False
        return True

    GLib.timeout_add(5, first_release)
    GLib.timeout_add_seconds(120, lambda: (problems.append("timeout"), loop.quit(), False)[-1])
    loop.run()
    for line in log:
        print(line)
    print("adds", adds["ok"])
    print("verdict", "ok" if not problems else "; ".join(problems), flush=True)


# MARK: noreply


def noreply(address, name, path, interface, method, token):
    conn = connect(address)
    conn.call(name, path, interface, method, GLib.Variant("(s)", (token,)), None, Gio.DBusCallFlags.NONE, -1, None, None)
    conn.flush_sync(None)
    print("sent", token, flush=True)


# MARK: badfd


def badfd(address, name, path, interface, method):
    conn = connect(address)
    message = Gio.DBusMessage.new_method_call(name, path, interface, method)
    message.set_body(GLib.Variant("(hy)", (5, 1)))
    try:
        # Generous, like every timeout here: the Swift service shares two cores with
        # the whole suite; this only keeps a service that never answers from hanging.
        reply, _ = conn.send_message_with_reply_sync(message, Gio.DBusSendMessageFlags.NONE, 60000, None)
    except GLib.Error as e:
        if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT):
            print("no-answer", flush=True)
            return
        raise
    if reply.get_message_type() == Gio.DBusMessageType.ERROR:
        print("error", reply.get_error_name(), flush=True)
    else:
        print("reply", reply.get_signature(), flush=True)


# MARK: big


def big(address, name, path, interface, size):
    conn = connect(address)
    size = int(size)
    data = os.urandom(size)
    key = 0x5A
    args = GLib.Variant.new_tuple(
        GLib.Variant.new_from_bytes(GLib.VariantType("ay"), GLib.Bytes.new(data), True), GLib.Variant("y", key))
    start = time.monotonic()
    # 16 MiB each way through a debug-built (or TSan) Swift service on a shared machine:
    # seconds, not milliseconds; the timeout only keeps a broken service from hanging.
    reply = conn.call_sync(name, path, interface, "Xor", args, GLib.VariantType("(ayt)"), Gio.DBusCallFlags.NONE,
                           120000, None)
    elapsed = time.monotonic() - start
    got = reply.get_child_value(0).get_data_as_bytes().get_data()
    received = reply.get_child_value(1).get_uint64()
    # XOR the whole buffer at once, as one big integer.
    expected = (int.from_bytes(data, "little") ^ int.from_bytes(bytes([key]) * size, "little")).to_bytes(size, "little")
    if got == expected and received == size:
        print("verdict ok", len(got))
    else:
        first = next((i for i in range(min(len(got), size)) if got[i] != expected[i]), min(len(got), size))
        print("verdict mismatch", len(got), size, first, received)
    print("elapsed %.3f" % elapsed, flush=True)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"serve": serve, "watch": watch, "gates": gates, "noreply": noreply, "badfd": badfd, "big": big}[command](*args)
