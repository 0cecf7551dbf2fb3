"""Follows a channel: every chunk its publisher commits, in order, as zero-copy views,
and the exact gaps where chunks were collected before this reader reached them.

The same semantics as the Swift ``Subscriber`` (Sources/ShmBus/Subscriber): it finds
the channel's current segment in the registry, maps it read-only, reads its log
directly (:class:`~shmbus.cursor.Cursor`), follows a retired segment to its successor
(through the registry, else through the publisher's ``Publisher1.OpenSegment``, else
the channel's current segment, the skipped chunks then reported as a gap), moves to
a new publisher's segment when the channel changes hands, and says when the
publisher left (:class:`PublisherLeft`), once everything it committed was delivered.

How it waits, `wait=`:

- ``"futex"`` (the default): sleeps on the writer's doorbell with ``FUTEX_WAIT``
  (pure Python through ctypes; see :mod:`shmbus.doorbell`), bounded to 100 ms a
  wait, so a missed wake-up delays and never stalls. Falls back to polling when the
  writer registered no doorbell.
- ``"poll"``: looks at the commit word every `poll_interval` seconds.
- ``"signal"``: waits for the publisher's ``Committed`` signals (only from the
  channel's registered owner: others are counted and ignored), setting the doorbell's
  "awaiting signal" flag first so that the publisher sends the next one at once.
  Needs PyGObject (Debian: python3-gi): the connection gets a GLib main loop, and
  the wait iterates GLib's default main context, so use it from one thread.

Everything it reads from a segment is validated; a corrupt segment raises a
:class:`~shmbus.errors.SegmentError` subclass from the iteration (after the events
read before the bad record were delivered).
"""
import os
import time

from . import format as F
from .cursor import Cursor, Gap, Retired, parse_start
from .doorbell import Doorbell, futex_available
from .errors import BusError, InvalidArgument, NotFound, SegmentError, Unavailable
from .registry import PUBLISHER_IFACE, PUBLISHER_PATH, Publisher, Registry
from .segment import Segment

__all__ = ["Subscriber", "PublisherLeft", "Gap"]


class PublisherLeft:
    """The channel's publisher left the bus after every chunk it committed was
    delivered; `owner` is its unique name, "" when the channel had no publisher when
    the subscription began (its persistent segments outlived it)."""

    __slots__ = ("owner",)

    def __init__(self, owner):
        self.owner = owner

    def __eq__(self, other):
        return isinstance(other, PublisherLeft) and other.owner == self.owner

    def __repr__(self):
        return "PublisherLeft(owner=%r)" % self.owner


class _Opened:
    __slots__ = ("segment", "doorbell")

    def __init__(self, segment, doorbell):
        self.segment = segment
        self.doorbell = doorbell


class Subscriber:
    """Iterate it for :class:`~shmbus.segment.Chunk`, :class:`~shmbus.cursor.Gap` and
    :class:`PublisherLeft` events, or call :meth:`next_event`.

    `start`: "now" (only what is committed from now on), "oldest" (the oldest chunk
    still held), or a sequence number (that chunk and the later ones; a gap first if
    it is gone). `bus` as :func:`shmbus.registry.connect`. `wait_for_channel`: how long
    to wait for a channel that has no segment yet. With `end_when_publisher_leaves`
    iteration ends after :class:`PublisherLeft`.
    """

    #: Idle time after which the subscriber asks the bus whether the publisher is
    #: still there and whether the channel moved to another segment.
    TICK = 0.5
    #: How long a successor is looked for while the registry is up.
    SUCCESSOR_TIMEOUT = 10.0

    def __init__(self, channel, bus=None, start="now", wait="futex", poll_interval=0.001,
                 wait_for_channel=10.0, end_when_publisher_leaves=False):
        problem = F.channel_name_problem(channel) if isinstance(channel, str) else "not a string"
        if problem:
            raise InvalidArgument("invalid channel name %r: %s" % (channel, problem))
        if wait not in ("futex", "poll", "signal"):
            raise ValueError("wait is 'futex', 'poll' or 'signal', not %r" % (wait,))
        start = parse_start(start)
        self.channel = channel
        self.wait = wait if (wait != "futex" or futex_available()) else "poll"
        self.poll_interval = poll_interval
        self.end_when_publisher_leaves = end_when_publisher_leaves
        self.statistics = {"signals": 0, "ignored_signals": 0, "segments_followed": 0, "successors_lost": 0,
                           "futex_wakes": 0, "from_publisher": 0}
        self._closed = False
        self._signalled = False
        self._signal_match = None
        self._ended = False
        self._abandoned = None
        self._owner_left = None          # the owner that left, until reported
        self._departed = None            # the last owner seen leaving
        self._read_since_departure = False
        self._last_tick = time.monotonic()
        self.registry = Registry(self._signal_bus(bus) if wait == "signal" else bus)
        if wait == "signal" and (bus is None or isinstance(bus, str)):
            self.registry._owns_connection = True     # made here for the signals: closed here
        try:
            if wait == "signal":
                # Listen first, then look: nothing committed after this is missed.
                self._signal_match = self.registry.connection.add_signal_receiver(
                    self._committed, signal_name="Committed", dbus_interface=PUBLISHER_IFACE, path=PUBLISHER_PATH,
                    arg0=channel, sender_keyword="sender")
            segment_name, owner, opened = self._open_current(wait_for_channel)
            self.owner = owner or None
            self._opened = opened
            self.cursor = Cursor(opened.segment, start)
            if not owner:
                self._owner_left = ""
        except BaseException:
            self.close()
            raise

    # MARK: connection

    @staticmethod
    def _signal_bus(bus):
        try:
            import dbus
            import dbus.mainloop.glib
        except ImportError:
            raise Unavailable("wait='signal' needs PyGObject (Debian: apt-get install python3-gi)") from None
        loop = dbus.mainloop.glib.DBusGMainLoop()
        try:
            if bus is None or bus == "session":
                return dbus.SessionBus(mainloop=loop, private=True)
            if bus == "system":
                return dbus.SystemBus(mainloop=loop, private=True)
            if isinstance(bus, str):
                return dbus.bus.BusConnection(bus, mainloop=loop)
        except dbus.exceptions.DBusException as error:
            raise Unavailable("cannot connect to the bus %r: %s" % (bus or "session", error)) from None
        return bus

    def _committed(self, *args, sender=None):
        # Only the channel's registered owner announces commits.
        if self.owner is not None and sender == self.owner:
            self.statistics["signals"] += 1
            self._signalled = True
        else:
            self.statistics["ignored_signals"] += 1

    def close(self):
        """Ends the subscription: removes the match, closes the connection, and lets
        go of the mappings (chunks still held keep theirs)."""
        if self._closed:
            return
        self._closed = True
        if self._signal_match is not None:
            try:
                self._signal_match.remove()
            except Exception:
                pass
        opened = getattr(self, "_opened", None)
        if opened is not None and opened.doorbell is not None:
            opened.doorbell.close()
        self.registry.close() if hasattr(self, "registry") else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # MARK: opening segments

    def _open(self, name):
        """A segment and its doorbell through the registry (NotFound if it has it not)."""
        got = self.registry.open_segment(name)
        try:
            segment = Segment(got.fd)
        finally:
            os.close(got.fd)
        doorbell = None
        if got.doorbell is not None:
            try:
                doorbell = Doorbell(got.doorbell)
            except SegmentError:
                doorbell = None          # a doorbell that does not open: poll instead
            finally:
                os.close(got.doorbell)
        if segment.name != name or segment.channel != self.channel:
            raise SegmentError("the registry handed out segment %s of channel %r for %s of %r"
                               % (segment.name, segment.channel, name, self.channel))
        return _Opened(segment, doorbell)

    def _open_current(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            current = self.registry.current_segment(self.channel)
            if current is not None:
                try:
                    return current[0], current[1], self._open(current[0])
                except NotFound:
                    pass             # replaced and dropped between the two calls: look again
            if time.monotonic() >= deadline:
                raise NotFound("no channel %r in the registry (waited %.1f s)" % (self.channel, timeout))
            time.sleep(0.02)

    def _from_owner(self, name, leaving):
        """What the channel's owner makes of Publisher1.OpenSegment(name): a Segment,
        "not-served" (NotFound) or None (no answer, or a segment that does not follow
        the one being read: checked more strictly than the registry's)."""
        if not self.owner:
            return None
        try:
            fd = Publisher(self.registry.connection, self.owner).open_segment(name)
        except NotFound:
            return "not-served"
        except BusError:
            return None
        try:
            segment = Segment(fd)
        except SegmentError:
            return None
        finally:
            os.close(fd)
        if segment.name != name or segment.channel != self.channel or segment.generation <= leaving:
            return None
        self.statistics["from_publisher"] += 1
        return segment

    def _successor(self, successor):
        """PROTOCOL.md: the registry, else the publisher, else the channel's current
        segment; while the registry is away, the publisher's segment or its current
        one. None when nobody has it and the publisher left (it took it along)."""
        mine, generation = self.cursor.segment.name, self.cursor.segment.generation
        deadline = time.monotonic() + self.SUCCESSOR_TIMEOUT
        while not self._closed:
            try:
                try:
                    return self._open(successor)
                except NotFound:
                    pass
                got = self._from_owner(successor, generation)
                if isinstance(got, Segment):
                    return _Opened(got, None)
                current = self.registry.current_segment(self.channel)
                if current is not None and current[0] not in (successor, mine):
                    try:
                        return self._open(current[0])
                    except NotFound:
                        pass
            except Unavailable:
                got = self._from_owner(successor, generation)
                if isinstance(got, Segment):
                    return _Opened(got, None)
                if got == "not-served":
                    try:
                        current = Publisher(self.registry.connection, self.owner).current_segment()
                    except BusError:
                        current = None
                    if current and current != mine:
                        got = self._from_owner(current, generation)
                        if isinstance(got, Segment):
                            return _Opened(got, None)
                deadline = time.monotonic() + self.SUCCESSOR_TIMEOUT
            if self.owner and not self._owner_present():
                return None
            if time.monotonic() >= deadline:
                raise NotFound("segment %s, the successor of %s, is neither in the registry nor served by the "
                               "channel's publisher" % (successor, mine))
            time.sleep(0.02)
        return None

    def _owner_present(self):
        try:
            present = self.registry.name_has_owner(self.owner)
        except BusError:
            return True
        if not present:
            self._departed = self.owner
            if self._owner_left is None:
                self._owner_left = self.owner
        return present

    def _move(self, opened):
        last = self.cursor.last_sequence or 0
        # A segment that continues this history accepted appends only after every
        # sequence already read (base >= last); one whose base is below is a new
        # history (the old publisher's segments went with it): read it from its start.
        if opened.segment.base_sequence < last:
            self.cursor = Cursor(opened.segment, "oldest")
        else:
            self.cursor.move(opened.segment)
        if opened.doorbell is not None:
            if self._opened.doorbell is not None and self._opened.doorbell is not opened.doorbell:
                self._opened.doorbell.close()
            self._opened = opened
        else:
            self._opened = _Opened(opened.segment, self._opened.doorbell)
        self.statistics["segments_followed"] += 1
        self._abandoned = None

    def _follow(self, successor):
        opened = self._successor(successor)
        if opened is None:
            self._abandoned = successor
            self.statistics["successors_lost"] += 1
            return
        self._move(opened)

    def _tick(self):
        """Idle: is the publisher still there, and did the channel move to a segment
        that does not continue the one being read (a new publisher)?"""
        self._last_tick = time.monotonic()
        try:
            if self.owner:
                self._owner_present()
            current = self.registry.current_segment(self.channel)
        except BusError:
            return False
        if current is None:
            return False
        name, owner = current
        if owner and owner != self.owner:
            self.owner = owner
        if name == self.cursor.segment.name or self.cursor.has_pending():
            return False
        try:
            opened = self._open(name)
        except (NotFound, Unavailable):
            return False
        self._move(opened)
        return True

    # MARK: reading

    def poll(self):
        """The next event if one is ready now (following successors as needed), else None."""
        while not self._closed:
            event = self.cursor.next()
            if isinstance(event, Retired):
                if self._abandoned == event.successor:
                    return None
                self._follow(event.successor)
                continue
            return event
        return None

    def _departure(self):
        """The departure to report now (Swift's ``departure(readSinceSeen:)``): only
        after a read that began after the departure was seen has found nothing more."""
        if self._owner_left is None:
            self._read_since_departure = False
            return None
        if not self._read_since_departure:
            self._read_since_departure = True
            return None
        owner, self._owner_left = self._owner_left, None
        self._read_since_departure = False
        return owner

    def next_event(self, timeout=None):
        """The next event, waiting at most `timeout` seconds (None: until there is one);
        None when the time passed or the subscription ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed and not self._ended:
            event = self.poll()
            if event is not None:
                return event
            if time.monotonic() - self._last_tick >= self.TICK and self._tick():
                continue
            owner = self._departure()
            if owner is not None:
                self._ended = self.end_when_publisher_leaves
                return PublisherLeft(owner)
            if self._read_since_departure:
                continue
            left = self.TICK if deadline is None else min(self.TICK, deadline - time.monotonic())
            if left <= 0:
                return None
            self._wait(left)
        return None

    def next_events(self, limit=256, timeout=None):
        """Up to `limit` events: what is ready now, or else the first one to come
        within `timeout` (a list, empty when none came)."""
        first = self.next_event(timeout)
        if first is None:
            return []
        events = [first]
        while len(events) < limit and not isinstance(events[-1], PublisherLeft):
            event = self.poll()
            if event is None:
                break
            events.append(event)
        return events

    def _wait(self, timeout):
        doorbell = self._opened.doorbell
        ready = self.cursor.has_pending
        if self.wait == "futex" and doorbell is not None:
            deadline = time.monotonic() + timeout
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if doorbell.wait(min(left, 0.1), ready):
                    self.statistics["futex_wakes"] += 1
        elif self.wait == "signal":
            self._wait_for_signal(timeout, doorbell)
        else:
            deadline = time.monotonic() + timeout
            while not ready() and time.monotonic() < deadline:
                time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))

    def _wait_for_signal(self, timeout, doorbell):
        from gi.repository import GLib
        self._signalled = False
        if doorbell is not None:
            doorbell.expect_signal()
        if self.cursor.has_pending():      # committed before the publisher saw the flag
            return
        context = GLib.MainContext.default()
        fired = []
        source = GLib.timeout_add(max(int(timeout * 1000), 1), lambda: fired.append(True) and False)
        while not self._signalled and not fired and not self._closed:
            context.iteration(True)
        if not fired:
            GLib.source_remove(source)

    def __iter__(self):
        while True:
            event = self.next_event()
            if event is None:
                return
            yield event

    def chunks(self):
        """The chunks only, gaps and departures left out."""
        for event in self:
            if not isinstance(event, (Gap, PublisherLeft)):
                yield event

    @property
    def last_sequence(self):
        return self.cursor.last_sequence
