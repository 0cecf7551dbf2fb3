"""Publishes a channel from Python: segments written by :mod:`shmbus.writer`, registered
with the registry (``RegisterSegment``, the descriptor and the doorbell passed as Unix
fds), garbage collection registered with ``replaces`` before the old segment is retired,
and ``Committed`` signals from ``/org/shmbus/Publisher1`` (docs/PROTOCOL.md).

    with shmbus.Publisher("camera/0", capacity=16 << 20) as publisher:
        publisher.publish(frame_bytes, key="latest")
        view = publisher.reserve(1 << 20)           # or write in place: a memoryview
        numpy.frombuffer(view, numpy.uint8)[:] = 7
        publisher.commit()

A new publisher of a channel that still holds a departed publisher's persistent
segments continues its history (next generation, sequences after the last, its live
chunks carried over, ``replaces`` its current segment), as the Swift publisher does.

With PyGObject (python3-gi) it serves ``Publisher1`` (``OpenSegment``, ``Channels``,
``CurrentSegment``) and re-registers its current segment when a registry appears, from
a GLib main loop on a thread of its own (:mod:`shmbus.service`); ``serve=False`` (or a
connection passed as `bus`) does without. That loop also sends a signal held back by
coalescing once its interval is over; without it, the held-back signal goes with the
next publish or :meth:`flush` (subscribers also look on their own every 500 ms, and
one waiting with the awaiting-signal flag gets its signal at once).
"""
import os
import threading
import time

from . import format as F
from . import service
from .doorbell import Doorbell
from .errors import BusError, InvalidArgument, NotFound, SegmentError, Unavailable
from .registry import PUBLISHER_IFACE, PUBLISHER_PATH, Registry, _segment_name
from .segment import Segment
from .writer import ChannelWriter, Lineage

__all__ = ["Publisher", "Published"]


class Published:
    """What :meth:`Publisher.publish` did: where the chunk is."""

    __slots__ = ("segment", "generation", "sequence", "offset", "length")

    def __init__(self, segment, generation, sequence, offset, length):
        self.segment, self.generation, self.sequence, self.offset, self.length = \
            segment, generation, sequence, offset, length

    def __repr__(self):
        return "Published(segment=%s, sequence=%d, offset=%d, length=%d)" % (
            self.segment, self.sequence, self.offset, self.length)


class Publisher:
    """The publisher of one channel on one connection. `capacity`: the segment size
    (a page multiple; the largest chunk is a little less); `persistent` (and `ttl`
    seconds) keep its segments after it leaves; `readers` are grants as
    docs/SECURITY.md says (``user:UID``, ``group:GID``, ``app:ID``, ``any``);
    `signal_interval`: the shortest time between two ``Committed`` signals;
    `linger`: seconds :meth:`close` stays on the bus after a collection (Swift's
    ``Options.linger``): a reader still on the retired segment needs the new one,
    which the registry drops as a non-persistent publisher leaves."""

    def __init__(self, channel, bus=None, capacity=64 << 20, persistent=False, ttl=None, readers=(),
                 signal_interval=0.001, replacing_keys=(), serve=None, linger=0.5):
        import dbus
        import dbus.lowlevel
        self._dbus = dbus
        problem = F.channel_name_problem(channel) if isinstance(channel, str) else "not a string"
        if problem:
            raise InvalidArgument("invalid channel name %r: %s" % (channel, problem))
        if ttl is not None and not persistent:
            raise InvalidArgument("ttl needs persistent=True")
        self.channel = channel
        self.persistent = persistent
        self.ttl = ttl
        self.readers = list(readers)
        self.signal_interval = signal_interval
        self.linger = linger
        self._last_collection = None
        self.signals_sent = 0
        self._pending = None          # (segment, generation, start, end, first, last) not announced yet
        self._last_signal = 0.0
        self._closed = False
        self._lock = threading.RLock()     # the writer's state, shared with the serving thread
        self._retired = []
        self._service = None
        self._timer = False
        if serve is None:
            serve = service.available() and (bus is None or isinstance(bus, str))
        if serve:
            connection, self._main, self._thread = service.connect(bus)
            self.registry = Registry(connection)
            self.registry._owns_connection = True
        else:
            self.registry = Registry(bus)
        self.connection = self.registry.connection
        self.doorbell = None
        self.writer = None
        try:
            self.doorbell = Doorbell.create()
            lineage, replaces = self._lineage(set(replacing_keys))
            self.writer = ChannelWriter(channel, capacity, lineage=lineage)
            self._register(self.writer.current, replaces)
            if serve:
                self._service = service.serve(self)
            if self.writer.inherited:
                seg = self.writer.current
                self._announce(seg, F.HEADER_SIZE, seg.end, 1, seg.last_sequence, at_once=True)
        except BaseException:
            self.close()
            raise

    def _lineage(self, replacing_keys):
        """The departed publishers' history on this channel, and the segment to replace."""
        try:
            listed = self.registry.list_segments(self.channel)
        except NotFound:
            return None, None
        current = self.registry.current_segment(self.channel)
        segments = []
        for info in listed:
            if info.state != "active":
                continue
            try:
                got = self.registry.open_segment(info.name)
            except NotFound:
                continue
            try:
                segments.append(Segment(got.fd))
            except SegmentError:
                pass                            # an invalid segment carries nothing over
            finally:
                os.close(got.fd)
                if got.doorbell is not None:
                    os.close(got.doorbell)
        if not segments:
            return None, None
        return Lineage(segments, excluding_keys=replacing_keys), (current[0] if current else None)

    def _register(self, segment, replaces=None):
        dbus = self._dbus
        options = dbus.Dictionary({"doorbell": dbus.types.UnixFd(self.doorbell.fd)}, signature="sv")
        if self.persistent:
            options["persistent"] = dbus.Boolean(True)
        if self.ttl is not None:
            options["ttl"] = dbus.UInt64(int(self.ttl))
        if replaces:
            options["replaces"] = dbus.String(replaces)
        if self.readers:
            options["readers"] = dbus.Array([str(r) for r in self.readers], signature="s")
        reply = self.registry.call("RegisterSegment", "sha{sv}", self.channel, dbus.types.UnixFd(segment.fd), options,
                                   context="RegisterSegment(%r)" % self.channel)
        name = _segment_name(reply[0], "RegisterSegment's segment")
        if name != segment.name:
            raise BusError("the registry registered segment %s as %s" % (segment.name, name))

    def _servable(self, name):
        """The segment Publisher1.OpenSegment may hand out: the current one, or one
        not retired yet (called on the serving thread)."""
        with self._lock:
            current = self.writer.current if self.writer is not None else None
            if current is not None and current.name == name and not self._closed:
                return current
        return None

    def _reregister(self):
        """A registry appeared (it restarted): register the current segment again (on
        the serving thread). Best effort: a failure leaves readers the publisher."""
        with self._lock:
            if self._closed or self.writer is None:
                return
            try:
                self._register(self.writer.current)
            except BusError:
                pass

    # MARK: signals

    def _announce(self, segment, start, end, first, last, at_once=False):
        if self._pending is not None and self._pending[0] is segment:
            p = self._pending
            self._pending = (segment, p[1], p[2], end, p[4], last)
        else:
            if self._pending is not None:
                self._send(*self._pending)
            self._pending = (segment, segment.generation, start, end, first, last)
        expected = self.doorbell.take_signal_expectation()
        if at_once or expected or time.monotonic() - self._last_signal >= self.signal_interval:
            self._send(*self._pending)
            self._pending = None
        elif self._service is not None and not self._timer:
            # Held back: the serving thread's loop sends it when the interval is over,
            # so the last chunk of a burst is announced within one interval.
            from gi.repository import GLib
            self._timer = True
            wait = self.signal_interval - (time.monotonic() - self._last_signal)
            GLib.timeout_add(max(int(wait * 1000) + 1, 1), self._timer_fired)

    def _timer_fired(self):
        """On the serving thread: the interval is over, send what is held back."""
        with self._lock:
            self._timer = False
            if self._pending is not None and not self._closed:
                self._send(*self._pending)
                self._pending = None
                self.connection.flush()
        return False

    def _send(self, segment, generation, start, end, first, last):
        dbus = self._dbus
        message = dbus.lowlevel.SignalMessage(PUBLISHER_PATH, PUBLISHER_IFACE, "Committed")
        message.append(self.channel, segment.name, dbus.UInt64(generation), dbus.UInt64(start), dbus.UInt64(end),
                       dbus.UInt64(first), dbus.UInt64(last), signature="ssttttt")
        self.connection.send_message(message)
        self._last_signal = time.monotonic()
        self.signals_sent += 1

    def flush(self):
        """Sends the Committed signal still held back by coalescing, and waits until
        the bus has everything sent so far."""
        with self._lock:
            if self._pending is not None:
                self._send(*self._pending)
                self._pending = None
        self.connection.flush()

    # MARK: publishing

    def _rotated(self, rotation):
        """A collection made `new` current: register it replacing `old`, then retire
        `old` (successor first, then the bit) and wake every sleeper."""
        old, new = rotation
        self._last_collection = time.monotonic()
        try:
            self._register(new, replaces=old.name)
        except Unavailable:
            # No registry: readers follow through Publisher1.OpenSegment, and the
            # current segment is registered when a registry appears.
            pass
        finally:
            old.retire(new)
            self.doorbell.ring(always=True)
            if self._pending is not None and self._pending[0] is old:
                self._send(*self._pending)
                self._pending = None
            if new.end > F.HEADER_SIZE:
                # Copies are announced again in their new generation: one range over them.
                self._pending = (new, new.generation, F.HEADER_SIZE, new.end, 1, new.last_sequence)
            # Readers may still be reading the replaced segments: their mappings are
            # their own, so this process keeps only the last two of its own.
            self._retired.append(old)
            while len(self._retired) > 2:
                self._retired.pop(0).close()

    def reserve(self, length, key="", expiry=0, attributes=None):
        """A writable memoryview of `length` bytes inside the segment, for a chunk
        written in place; :meth:`commit` publishes it (nothing is visible before).
        `attributes`: name -> str, int, list of ints or float, stored with the chunk
        (docs/FORMAT.md, "Attributes"); checked as readers check them, InvalidArgument
        if they would refuse the record."""
        self._check_open()
        with self._lock:
            view, rotation = self.writer.reserve(length, key, expiry, attributes)
            if rotation is not None:
                self._rotated(rotation)
        return view

    def commit(self):
        """Commits the chunk :meth:`reserve` opened; returns a :class:`Published`."""
        self._check_open()
        with self._lock:
            segment, sequence, record_offset, payload_offset = self.writer.commit()
            self.doorbell.ring()
            self._announce(segment, record_offset, segment.end, sequence, sequence)
        payload_length = int.from_bytes(segment.map[record_offset + 40:record_offset + 48], "little")
        return Published(segment.name, segment.generation, sequence, payload_offset, payload_length)

    def publish(self, payload, key="", expiry=0, attributes=None):
        """Copies `payload` (any bytes-like object) into a new chunk and commits it,
        with `attributes` as :meth:`reserve` takes them."""
        payload = memoryview(payload).cast("B")
        view = self.reserve(len(payload), key, expiry, attributes)
        try:
            view[:] = payload
        finally:
            view.release()
        return self.commit()

    @property
    def current_segment(self):
        return self.writer.current.name

    @property
    def last_sequence(self):
        return self.writer.last_sequence

    def _check_open(self):
        if self._closed:
            raise InvalidArgument("the publisher is closed")

    def close(self):
        """Announces what is pending, waits out `linger` if a collection happened
        within it, and leaves the bus: the registry then drops the non-persistent
        segments (persistent ones stay, as registered)."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
        try:
            if self.writer is not None:
                self.flush()
        except Exception:
            pass
        if not self.persistent and self._last_collection is not None:
            rest = self.linger - (time.monotonic() - self._last_collection)
            if rest > 0:
                time.sleep(rest)
        # The GLib loop thread stops first: it dispatches on the connection, and a
        # connection closed under a dispatch aborts the interpreter (libdbus asserts;
        # seen in a fresh-clone CI run of test_publisher).
        if getattr(self, "_main", None) is not None:
            self._main.quit()
            self._thread.join(timeout=5)
        if self._service is not None:
            try:
                self._service[1].remove()
                self._service[0].remove_from_connection()
            except Exception:
                pass
        self.registry._owns_connection = True
        self.registry.close()
        for segment in self._retired:
            segment.close()
        if self.writer is not None:
            self.writer.close()
        if self.doorbell is not None:
            self.doorbell.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
