#!/usr/bin/python3
"""A private bus run by dbus-broker, without systemd: this script is its controller.

    dbus-broker-bus.py [--config FILE] SOCKET_PATH

dbus-broker does not listen or read configuration itself: a controller hands it a
listening socket and a policy over a socket pair (`--controller FD`), speaking the
`org.bus1.DBus.Broker` interface. On a systemd machine that controller is
`dbus-broker-launch`, which needs journald and the systemd manager; this script does
what dbus-broker's own test harness does (test/dbus/util-broker.c): it creates the
listening socket at SOCKET_PATH, starts `dbus-broker --controller`, adds the listener
with a policy, prints the bus address on stdout and then serves the controller
connection until the broker exits or this script is told to stop (SIGTERM or SIGINT).
The broker is stopped with it (and dies with it: PR_SET_PDEATHSIG). ShmBusTesting's
`PrivateBus(daemon: .dbusBroker)` runs it.

The policy: without --config, an open one (every user may connect, own any name, send
and receive anything, as PrivateBus's dbus-daemon configuration allows). With --config,
FILE's, a dbus-daemon busconfig file translated as dbus-broker-launch translates it
(dbus_broker_policy.py, beside this script): its <policy> rules, <include>s and
<includedir>s, <type>, <selinux> and <apparmor>. What it does not translate (<listen>,
<auth>, <limit>, at_console=, ...) it refuses, exiting 2 before the broker starts.

Needs python3-gi (GDBus speaks the controller's peer-to-peer D-Bus) and dbus-broker.
"""
import ctypes
import os
import signal
import socket
import subprocess
import sys

import gi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbus_broker_policy  # noqa: E402

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

POLICY = dbus_broker_policy.POLICY_TYPE
UINT64_MAX = dbus_broker_policy.UINT64_MAX


def open_policy():
    """Allow everything, for every user (the fallback uid, -1), as util-broker.c does:
    connect; own any name (the empty prefix); send and receive any message."""
    xmit = [(True, 1, "", "", "", "", 0, 0, 0, UINT64_MAX)]
    batch = (True, 1, [(True, 1, True, "")], xmit, xmit)
    return ([(0xFFFFFFFF, batch)], [], [], False, "session")


def arguments():
    """(config or None, socket path); the usage line and exit 2 for anything else."""
    usage = __doc__.strip().splitlines()[2].strip()
    words = sys.argv[1:]
    config = None
    if len(words) == 3 and words[0] == "--config":
        config, words = words[1], words[2:]
    if len(words) != 1 or words[0].startswith("-"):
        print("usage: " + usage, file=sys.stderr)
        sys.exit(2)
    return config, words[0]


def main():
    config, path = arguments()
    # The policy first: a file that does not translate starts no broker.
    try:
        policy = open_policy() if config is None else dbus_broker_policy.translate(config)
    except dbus_broker_policy.ConfigError as error:
        print("dbus-broker-bus.py: %s" % error, file=sys.stderr)
        sys.exit(2)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)            # every user may connect (the policy decides the rest)
    listener.listen(4096)
    # The broker accepts until EAGAIN, as on the non-blocking socket its launcher makes:
    # on a blocking one its second accept() would block the whole broker.
    listener.setblocking(False)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_us():
        libc.prctl(1, signal.SIGTERM)        # PR_SET_PDEATHSIG

    broker = subprocess.Popen(
        ["dbus-broker", "--controller", str(theirs.fileno()), "--machine-id", "0123456789abcdef0123456789abcdef",
         "--max-bytes", "1000000000", "--max-fds", "250000000", "--max-matches", "1000000", "--max-objects", "1000000"],
        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, preexec_fn=die_with_us)
    theirs.close()

    stream = Gio.Socket.new_from_fd(ours.detach()).connection_factory_create_connection()
    controller = Gio.DBusConnection.new_sync(stream, None, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None)
    fds = Gio.UnixFDList.new()
    index = fds.append(listener.fileno())
    controller.call_with_unix_fd_list_sync(
        None, "/org/bus1/DBus/Broker", "org.bus1.DBus.Broker", "AddListener",
        GLib.Variant("(ohv)", ("/org/bus1/DBus/Listener/0", index, GLib.Variant(POLICY, policy))),
        None, Gio.DBusCallFlags.NONE, -1, fds, None)
    listener.close()        # the broker has its own copy now
    print("unix:path=%s" % path, flush=True)

    loop = GLib.MainLoop()
    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, broker.pid, lambda *_: loop.quit())
    for number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, number, lambda *_: loop.quit() or False)
    loop.run()
    if broker.poll() is None:
        broker.terminate()
        broker.wait()
    os.unlink(path)
    sys.exit(0 if broker.returncode in (0, -signal.SIGTERM) else 1)


if __name__ == "__main__":
    main()
