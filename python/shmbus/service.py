"""The ``/org/shmbus/Publisher1`` object a Python publisher serves (docs/PROTOCOL.md,
"org.shmbus.Publisher1"), and its watch on the registry.

dbus-python answers method calls only from a main loop, so the publisher's connection
gets GLib's (PyGObject, Debian: python3-gi) and a daemon thread runs it. That thread
answers ``OpenSegment`` (a read-only descriptor of the current segment, or of one not
retired yet; ``org.shmbus.Error.NotFound`` for anything else) and the ``Channels`` and
``CurrentSegment`` properties, applying the segment's read policy to the caller as
the registry does (docs/SECURITY.md; the caller's identity from the bus, never from
the call), and re-registers the current segment when a registry appears on the bus.

It runs GLib's default main context: a process with a serving Publisher should not
also iterate that context elsewhere (a Subscriber with wait="signal").
"""
import os
import threading

from .registry import PUBLISHER_IFACE, PUBLISHER_PATH, PROPERTIES_IFACE, REGISTRY_NAME

__all__ = ["available", "serve"]


def available():
    try:
        import dbus.mainloop.glib          # noqa: F401
        from gi.repository import GLib     # noqa: F401
    except ImportError:
        return False
    return True


def connect(bus):
    """A connection with GLib's main loop, and the thread that runs it."""
    import dbus
    import dbus.mainloop.glib
    from gi.repository import GLib
    dbus.mainloop.glib.threads_init()
    loop = dbus.mainloop.glib.DBusGMainLoop()
    if bus is None or bus == "session":
        connection = dbus.SessionBus(mainloop=loop, private=True)
    elif bus == "system":
        connection = dbus.SystemBus(mainloop=loop, private=True)
    else:
        connection = dbus.bus.BusConnection(bus, mainloop=loop)
    main = GLib.MainLoop()
    thread = threading.Thread(target=main.run, name="shmbus-publisher", daemon=True)
    thread.start()
    return connection, main, thread


def _caller_may_read(connection, sender, readers):
    """docs/SECURITY.md, "Who may read", for a publisher: root and the channel's own
    user (this process's), and the grants; a sandboxed caller only with an app grant.
    Returns None when allowed, else the reason."""
    credentials = connection.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                           "GetConnectionCredentials", "s", (sender,))
    uid = int(credentials.get("UnixUserID", -1))
    groups = {int(g) for g in credentials.get("UnixGroupIDs", [])}
    pid = int(credentials.get("ProcessID", 0))
    me = os.getuid()
    rules = "its own user, root" + "".join(", " + r for r in readers)
    app = None
    if uid == me:
        # Our own user: is the caller sandboxed? Flatpak puts /.flatpak-info in its mount namespace.
        try:
            with open("/proc/%d/root/.flatpak-info" % pid) as f:
                text = f.read()
            app = next((line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("name=")), "?")
        except FileNotFoundError:
            app = None
        except OSError as error:
            return "cannot tell whether process %d is sandboxed: %s" % (pid, error)
    if app is not None:
        if "app:" + app in readers or "app:*" in readers:
            return None
        return "not readable by sandboxed app %s (the channel's readers: %s)" % (app, rules)
    if uid in (0, me) or "any" in readers or "user:%d" % uid in readers:
        return None
    if any("group:%d" % g in readers for g in groups):
        return None
    return "readable by %s; user %d is not among them" % (rules, uid)


def serve(publisher):
    """Exports the publisher's object on its connection (the GLib one)."""
    import dbus
    import dbus.service

    class PublisherObject(dbus.service.Object):
        @dbus.service.method(PUBLISHER_IFACE, in_signature="s", out_signature="h", sender_keyword="sender")
        def OpenSegment(self, segment, sender=None):
            refusal = _caller_may_read(publisher.connection, sender, publisher.readers)
            if refusal:
                raise dbus.exceptions.DBusException("channel %r is %s" % (publisher.channel, refusal),
                                                    name="org.shmbus.Error.AccessDenied")
            found = publisher._servable(str(segment))
            if found is None:
                raise dbus.exceptions.DBusException(
                    "segment %s is not one this publisher serves (not its current one, or retired)" % segment,
                    name="org.shmbus.Error.NotFound")
            fd = os.open("/proc/self/fd/%d" % found.fd, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return dbus.types.UnixFd(fd)          # duplicates it
            finally:
                os.close(fd)

        @dbus.service.method(PROPERTIES_IFACE, in_signature="ss", out_signature="v")
        def Get(self, interface, name):
            values = self.GetAll(interface)
            if name not in values:
                raise dbus.exceptions.DBusException("no property %s" % name,
                                                    name="org.freedesktop.DBus.Error.UnknownProperty")
            return values[name]

        @dbus.service.method(PROPERTIES_IFACE, in_signature="s", out_signature="a{sv}")
        def GetAll(self, interface):
            if interface != PUBLISHER_IFACE:
                raise dbus.exceptions.DBusException("no interface %s" % interface,
                                                    name="org.freedesktop.DBus.Error.UnknownInterface")
            return dbus.Dictionary({"Channels": dbus.Array([publisher.channel], signature="s"),
                                    "CurrentSegment": dbus.String(publisher.current_segment)}, signature="sv")

    exported = PublisherObject(publisher.connection, PUBLISHER_PATH)

    def registry_changed(name, old, new):
        if new:
            publisher._reregister()

    match = publisher.connection.add_signal_receiver(
        registry_changed, signal_name="NameOwnerChanged", dbus_interface="org.freedesktop.DBus",
        path="/org/freedesktop/DBus", arg0=REGISTRY_NAME)
    return exported, match
