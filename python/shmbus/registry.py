"""A client of the ShmBus registry, ``org.shmbus.Registry1`` (docs/PROTOCOL.md), and of
a publisher's ``org.shmbus.Publisher1``, over dbus-python.

Why dbus-python: ``OpenSegment`` returns file descriptors, and dbus-python passes
them (``dbus.types.UnixFd``); it is also what Debian ships (``python3-dbus``), so
nothing has to be compiled. Only method calls are made here, which need no main loop.

Every reply is untrusted: its shape and types are checked against the contract, and
a wrong one raises :class:`~shmbus.errors.BadReply`; D-Bus errors become the typed
exceptions of :mod:`shmbus.errors`. Descriptors received are owned by the caller
(plain ints, close-on-exec).
"""
import os
from collections import namedtuple

from . import attributes as A
from . import format as F
from .errors import BY_DBUS_NAME, BadReply, BusError, InvalidArgument, Unavailable

try:
    import dbus
except ImportError:          # pragma: no cover - reported when a bus is asked for
    dbus = None

__all__ = ["Registry", "Publisher", "connect", "ChannelInfo", "SegmentInfo", "LookupResult", "LookupChunkResult", "OpenedSegment",
           "REGISTRY_NAME", "REGISTRY_PATH"]

REGISTRY_NAME = "org.shmbus.Registry1"
REGISTRY_PATH = "/org/shmbus/Registry1"
REGISTRY_IFACE = "org.shmbus.Registry1"
CHANNEL_IFACE = "org.shmbus.Channel1"
PUBLISHER_PATH = "/org/shmbus/Publisher1"
PUBLISHER_IFACE = "org.shmbus.Publisher1"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"

#: ListChannels: name, owner (unique name, empty once gone), current segment,
#: generation, segments, bytes (whole segments, headers included).
ChannelInfo = namedtuple("ChannelInfo", "name owner current_segment generation segments bytes")
#: ListSegments: created is microseconds since the epoch.
SegmentInfo = namedtuple("SegmentInfo",
                         "name channel path generation capacity committed_bytes live_chunks state persistent created")
#: Lookup: `offset` is the payload's byte offset in the segment.
LookupResult = namedtuple("LookupResult", "segment offset length sequence")
#: LookupChunk: Lookup's four, and `info` (plain Python values: ``timestamp`` and
#: ``expiry`` ints, ``attributes`` an :class:`~shmbus.attributes.Attributes`, empty when
#: the chunk has none; unknown keys kept as they came).
LookupChunkResult = namedtuple("LookupChunkResult", "segment offset length sequence info")
#: OpenSegment: a read-only segment descriptor, the info dictionary (plain Python
#: values, unknown keys kept), and the doorbell descriptor or None.
OpenedSegment = namedtuple("OpenedSegment", "fd info doorbell")


def connect(bus=None):
    """A dbus-python connection: `bus` None or "session" for the session bus,
    "system" for the system bus, an address ("unix:path=…") for any other, or an
    existing ``dbus.bus.BusConnection`` (returned as it is)."""
    if dbus is None:
        raise Unavailable("dbus-python is not installed (Debian: apt-get install python3-dbus)")
    try:
        if bus is None or bus == "session":
            return dbus.SessionBus(private=True)
        if bus == "system":
            return dbus.SystemBus(private=True)
        if isinstance(bus, str):
            return dbus.bus.BusConnection(bus)
    except dbus.exceptions.DBusException as error:
        raise _translate(error, "cannot connect to the bus %r" % (bus or "session")) from None
    return bus


def _translate(error, context):
    name = error.get_dbus_name() if hasattr(error, "get_dbus_name") else None
    message = error.get_dbus_message() if hasattr(error, "get_dbus_message") else str(error)
    kind = BY_DBUS_NAME.get(name, BusError)
    return kind("%s: %s" % (context, message or name), name)


def _call(connection, destination, path, interface, method, signature, args, context, timeout=25.0):
    """One method call, addressed to `destination` by name each time: a well-known
    name reaches whoever owns it now (a restarted registry), which a dbus-python proxy,
    bound to the owner it found when made, would not."""
    try:
        return connection.call_blocking(destination, path, interface, method, signature, args, timeout=timeout)
    except dbus.exceptions.DBusException as error:
        raise _translate(error, context) from None


def _str(value, what):
    if not isinstance(value, str):
        raise BadReply("%s is %s, not a string" % (what, type(value).__name__))
    return str(value)


def _uint(value, what, bits=64):
    if isinstance(value, (bool, dbus.Boolean)) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise BadReply("%s is %r, not an unsigned %d-bit integer" % (what, value, bits))
    return int(value)


def _bool(value, what):
    if not isinstance(value, (bool, dbus.Boolean)):
        raise BadReply("%s is %r, not a boolean" % (what, value))
    return bool(value)


def _segment_name(value, what):
    name = _str(value, what)
    if len(name) != 32 or any(c not in "0123456789abcdef" for c in name):
        raise BadReply("%s %r is not 32 lowercase hex digits" % (what, name))
    return name


def _take_fd(value, what):
    if not isinstance(value, dbus.types.UnixFd):
        raise BadReply("%s is %s, not a file descriptor" % (what, type(value).__name__))
    fd = value.take()
    os.set_inheritable(fd, False)
    return fd


def _struct(value, arity, what):
    if not isinstance(value, (tuple, list, dbus.Struct)) or len(value) != arity:
        raise BadReply("%s is not a structure of %d fields" % (what, arity))
    return value


def _attribute_value(value):
    """An a{sv} value as FORMAT.md's type table maps it (s, x, ax, d), or None."""
    if isinstance(value, dbus.String):
        return str(value)
    if isinstance(value, dbus.Int64):
        return int(value)
    if isinstance(value, dbus.Double):
        return float(value)
    if isinstance(value, dbus.Array) and value.signature == "x":
        return tuple(int(v) for v in value)
    return None


def _attributes(value, payload_length):
    if not isinstance(value, dict):
        raise BadReply("LookupChunk's attributes are not a dictionary")
    entries = {}
    for name in sorted(str(n) for n in value):
        converted = _attribute_value(value[name])
        if converted is not None:
            entries[name] = converted
    try:
        return A.parse(A.encode(entries, payload_length), payload_length)
    except A.Problem as problem:
        raise BadReply("LookupChunk's attributes: %s" % problem.message) from None


def _check_channel(channel):
    problem = F.channel_name_problem(channel) if isinstance(channel, str) else "not a string"
    if problem:
        raise InvalidArgument("invalid channel name %r: %s" % (channel, problem))


class Registry:
    """``org.shmbus.Registry1`` on one connection. `bus` as for :func:`connect`."""

    def __init__(self, bus=None, timeout=25.0):
        # A connection passed in stays the caller's: close() leaves it open.
        self._owns_connection = bus is None or isinstance(bus, str)
        self.connection = connect(bus)
        self.timeout = timeout

    def call(self, method, signature="", *args, context=None):
        """A call of org.shmbus.Registry1 `method`, errors typed."""
        return _call(self.connection, REGISTRY_NAME, REGISTRY_PATH, REGISTRY_IFACE, method, signature, args,
                     context or method, timeout=self.timeout)

    def close(self):
        """Closes the connection if this object opened it."""
        if not self._owns_connection:
            return
        try:
            self.connection.close()
        except Exception:       # an already closed connection
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def list_channels(self):
        """``ListChannels()``: the channels this caller may read, as ChannelInfo."""
        reply = self.call("ListChannels")
        out = []
        for i, item in enumerate(reply):
            name, owner, current, generation, segments, size = _struct(item, 6, "ListChannels[%d]" % i)
            out.append(ChannelInfo(_str(name, "channel name"), _str(owner, "owner"), _str(current, "current segment"),
                                   _uint(generation, "generation"), _uint(segments, "segments"), _uint(size, "bytes")))
        return out

    def list_segments(self, channel=""):
        """``ListSegments(channel)``: that channel's segments ("" for every channel),
        as SegmentInfo. An unknown channel raises NotFound."""
        if channel:
            _check_channel(channel)
        reply = self.call("ListSegments", "s", channel, context="ListSegments(%r)" % channel)
        out = []
        for i, item in enumerate(reply):
            f = _struct(item, 10, "ListSegments[%d]" % i)
            out.append(SegmentInfo(_segment_name(f[0], "segment"), _str(f[1], "channel"), _str(f[2], "path"),
                                   _uint(f[3], "generation"), _uint(f[4], "capacity"), _uint(f[5], "committed bytes"),
                                   _uint(f[6], "live chunks"), _str(f[7], "state"), _bool(f[8], "persistent"),
                                   _uint(f[9], "created")))
        return out

    def lookup(self, channel, key):
        """``Lookup(channel, key)``: where the newest live chunk of `key` is. NotFound
        when the channel or the key is unknown."""
        _check_channel(channel)
        reply = self.call("Lookup", "ss", channel, key, context="Lookup(%r, %r)" % (channel, key))
        segment, offset, length, sequence = _struct(reply, 4, "Lookup's reply")
        return LookupResult(_segment_name(segment, "segment"), _uint(offset, "offset"), _uint(length, "length"),
                            _uint(sequence, "sequence"))

    def lookup_chunk(self, channel, key):
        """``LookupChunk(channel, key)``: where the newest live chunk of `key` is, and
        what it says it holds, before anything is mapped. The registry read the
        attributes from the record; they are checked again here, as a reader checks a
        block (BadReply if they fail), so that a client may decide on them. Values of a
        D-Bus type the contract does not give attributes are skipped, as a reader skips
        an entry of an unknown type. Names come back sorted: a{sv} keeps no order."""
        _check_channel(channel)
        reply = self.call("LookupChunk", "ss", channel, key, context="LookupChunk(%r, %r)" % (channel, key))
        segment, offset, length, sequence, info_value = _struct(reply, 5, "LookupChunk's reply")
        length = _uint(length, "length")
        if not isinstance(info_value, dict):
            raise BadReply("LookupChunk's info is not a dictionary")
        info = {}
        for name, value in info_value.items():
            name = str(name)
            if name in ("timestamp", "expiry"):
                info[name] = _uint(value, "LookupChunk's %s" % name)
            elif name == "attributes":
                info[name] = _attributes(value, length)
            else:
                info[name] = value
        info.setdefault("attributes", A.EMPTY)
        return LookupChunkResult(_segment_name(segment, "segment"), _uint(offset, "offset"), length,
                                 _uint(sequence, "sequence"), info)

    def open_segment(self, segment):
        """``OpenSegment(segment)``: an OpenedSegment whose `fd` (and `doorbell`, if
        the writer registered one) the caller owns and must close."""
        reply = self.call("OpenSegment", "s", segment, context="OpenSegment(%s)" % segment)
        fd_value, info_value = _struct(reply, 2, "OpenSegment's reply")
        fd = _take_fd(fd_value, "OpenSegment's fd")
        doorbell = None
        try:
            if not isinstance(info_value, dict):
                raise BadReply("OpenSegment's info is not a dictionary")
            info = {}
            # Known keys must have their declared types; unknown keys are kept as they are.
            checks = {"channel": _str, "generation": _uint, "capacity": _uint, "owner": _str,
                      "persistent": _bool, "state": _str, "replaced_by": _str}
            for key, value in info_value.items():
                key = str(key)
                if key == "doorbell":
                    doorbell = _take_fd(value, "OpenSegment's doorbell")
                elif key in checks:
                    info[key] = checks[key](value, "OpenSegment's %s" % key)
                elif key == "readers":
                    if not isinstance(value, (list, dbus.Array)):
                        raise BadReply("OpenSegment's readers is not an array")
                    info[key] = [_str(v, "a reader grant") for v in value]
                else:
                    info[key] = value
        except BaseException:
            os.close(fd)
            if doorbell is not None:
                os.close(doorbell)
            raise
        return OpenedSegment(fd, info, doorbell)

    def channel(self, channel):
        """The channel's ``org.shmbus.Channel1`` properties as a dict (Name, Owner,
        CurrentSegment, Generation, Segments), or None when the registry has no such
        channel."""
        _check_channel(channel)
        path = "%s/channel/%s" % (REGISTRY_PATH, F.escape_path_component(channel))
        try:
            props = self.connection.call_blocking(REGISTRY_NAME, path, PROPERTIES_IFACE, "GetAll", "s", (CHANNEL_IFACE,),
                                                  timeout=self.timeout)
        except dbus.exceptions.DBusException as error:
            if error.get_dbus_name() in ("org.freedesktop.DBus.Error.UnknownObject",
                                         "org.freedesktop.DBus.Error.UnknownInterface",
                                         "org.freedesktop.DBus.Error.UnknownMethod"):
                return None
            raise _translate(error, "channel %r" % channel) from None
        if not isinstance(props, dict):
            raise BadReply("Channel1's properties are not a dictionary")
        return {"Name": _str(props.get("Name", channel), "Name"), "Owner": _str(props.get("Owner", ""), "Owner"),
                "CurrentSegment": _str(props.get("CurrentSegment", ""), "CurrentSegment"),
                "Generation": _uint(props.get("Generation", 0), "Generation")}

    def current_segment(self, channel):
        """(segment, owner) of the channel's current segment, or None when it has none."""
        found = self.channel(channel)
        if found is None or not found["CurrentSegment"]:
            return None
        return _segment_name(found["CurrentSegment"], "CurrentSegment"), found["Owner"]

    def name_has_owner(self, name):
        """Whether `name` (a unique name such as ":1.5") is on the bus now."""
        return bool(_call(self.connection, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                          "NameHasOwner", "s", (name,), "NameHasOwner(%s)" % name, timeout=self.timeout))


class Publisher:
    """``org.shmbus.Publisher1`` of one publishing connection (its unique name), on
    `connection`. For when the registry cannot help (PROTOCOL.md, "org.shmbus.Publisher1")."""

    def __init__(self, connection, owner, timeout=2.0):
        self.connection = connection
        self.owner = owner
        self.timeout = timeout

    def open_segment(self, segment):
        """``OpenSegment(segment)``: a read-only descriptor the caller owns."""
        reply = _call(self.connection, self.owner, PUBLISHER_PATH, PUBLISHER_IFACE, "OpenSegment", "s", (segment,),
                      "%s's OpenSegment(%s)" % (self.owner, segment), timeout=self.timeout)
        return _take_fd(reply, "Publisher1.OpenSegment's fd")

    def current_segment(self):
        value = _call(self.connection, self.owner, PUBLISHER_PATH, PROPERTIES_IFACE, "Get", "ss",
                      (PUBLISHER_IFACE, "CurrentSegment"), "%s's CurrentSegment" % self.owner, timeout=self.timeout)
        return _segment_name(value, "CurrentSegment")
