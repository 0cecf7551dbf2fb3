"""Reads a channel's chunks in sequence order across segments: skips obsolete and
expired chunks, and reports chunks it can no longer deliver as a gap with their exact
count (docs/FORMAT.md, "Gaps"). The same rules as the Swift ``ChannelCursor``
(Sources/SharedSegments/Reader/ChannelCursor.swift), so a Python and a Swift reader of
one channel see the same chunks and the same gaps.

No bus here: when the segment is retired and read to its end, ``next()`` returns a
:class:`Retired` naming the successor, and whoever owns the cursor opens it and calls
``move(to)``. One owner (thread) per cursor.
"""
import time

from . import format as F
from .errors import BadRecord
from .segment import now_ns

__all__ = ["Cursor", "Gap", "Retired", "parse_start"]


class Gap:
    """`missed` sequences after `after` will never be delivered (collected away
    before this reader reached them)."""

    __slots__ = ("missed", "after")

    def __init__(self, missed, after):
        self.missed = missed
        self.after = after

    def __eq__(self, other):
        return isinstance(other, Gap) and (self.missed, self.after) == (other.missed, other.after)

    def __repr__(self):
        return "Gap(missed=%d, after=%d)" % (self.missed, self.after)


class Retired:
    """The segment is retired and read to its end; its successor is `successor`."""

    __slots__ = ("successor",)

    def __init__(self, successor):
        self.successor = successor

    def __repr__(self):
        return "Retired(successor=%s)" % self.successor


def parse_start(start):
    """"now", "oldest", or a sequence (an int >= 0); anything else is a ValueError."""
    if start in ("now", "oldest"):
        return start
    if isinstance(start, int) and not isinstance(start, bool) and 0 <= start < (1 << 64):
        return start
    raise ValueError("start is 'now', 'oldest' or a sequence number, not %r" % (start,))


class Cursor:
    """Position and last sequence in a channel. `start` as :func:`parse_start`."""

    #: How often a record that fails validation at the newest position of a segment
    #: still being written is read again (after loading the commit word again) before
    #: the error is raised: Python has no acquire load (FORMAT.md, "Commit").
    RETRIES = 3

    def __init__(self, segment, start="oldest"):
        start = parse_start(start)
        self.segment = segment
        self.position = F.HEADER_SIZE
        self.limit = 0
        self.last_sequence = None       # the last sequence delivered or passed over
        self.skipped = 0                # obsolete or expired chunks passed over
        if start == "now":
            state = segment.live_state()
            self.position = state.committed_end
            self.last_sequence = state.last_sequence
        elif start != "oldest":
            self.last_sequence = None if start == 0 else start - 1

    def move(self, segment):
        """Continues in `segment` from its start; chunks already delivered are skipped."""
        self.segment = segment
        self.position = F.HEADER_SIZE
        self.limit = 0

    def has_pending(self):
        """Whether next() would return something without waiting."""
        try:
            return self.segment.committed_end() > self.position or self.segment.is_retired()
        except Exception:
            return True             # let next() raise what is wrong

    def _read(self):
        retries = self.RETRIES
        while True:
            try:
                return self.segment.record(self.position, self.limit)
            except BadRecord:
                if retries == 0 or self.segment.is_retired():
                    raise
                retries -= 1
                time.sleep(0.0005)
                self.limit = self.segment.committed_end()

    def next(self):
        """The next Chunk, Gap or Retired, or None when nothing new is committed yet."""
        while True:
            if self.position >= self.limit:
                # The header is looked at only when the records known to be committed
                # are used up: `state` first, then the commit word.
                state = self.segment.live_state()
                self.limit = state.committed_end
                if self.position >= self.limit:
                    return Retired(state.successor) if state.retired else None
            chunk = self._read()
            last = self.last_sequence
            if last is not None:
                if chunk.sequence <= last:
                    # Delivered already (a copy made by garbage collection), or a
                    # writer going backwards: either way not new.
                    self.position = chunk.end
                    continue
                if chunk.sequence > last + 1:
                    # Report the gap first; the chunk comes on the next call.
                    self.last_sequence = chunk.sequence - 1
                    return Gap(chunk.sequence - last - 1, last)
            self.position = chunk.end
            self.last_sequence = chunk.sequence
            if not chunk.obsolete and (chunk.expiry == 0 or chunk.expiry > now_ns()):
                return chunk
            self.skipped += 1
