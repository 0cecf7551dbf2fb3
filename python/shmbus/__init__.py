"""ShmBus for Python: read channels of large data shared between processes through
sealed memfd segments, with zero copies (docs/FORMAT.md, docs/PROTOCOL.md).

    import shmbus
    chunk = shmbus.latest("screenshots", "latest")        # a Chunk; chunk.payload is a memoryview
    for event in shmbus.Subscriber("camera/0", start="oldest"):
        ...                                               # Chunk, Gap or PublisherLeft

Modules: :mod:`shmbus.segment` (the format reader, standard library only),
:mod:`shmbus.attributes` (what a chunk says it holds), :mod:`shmbus.arrays` (numpy views),
:mod:`shmbus.registry` (the D-Bus client, dbus-python), :mod:`shmbus.cursor` (gaps and
successors), :mod:`shmbus.doorbell` (futex waits), :mod:`shmbus.subscriber`,
:mod:`shmbus.aio` (asyncio), :mod:`shmbus.blob` (blobs in any D-Bus call, docs/BLOBS.md; its
receiver's checks in :mod:`shmbus.blob_checks`, its service errors in :mod:`shmbus.blob_dbus`),
:mod:`shmbus.errors`.
"""
import os

from .errors import (ShmBusError, SegmentError, NotSealed, BadHeader, UnsupportedVersion, BadRecord, BadAttributes,
                     BadDoorbell, NotAnArray, BusError, NotFound, AccessDenied, InvalidArgument, QuotaExceeded, ChannelBusy, Unavailable,
                     BadReply)
from .segment import Segment, Chunk, LiveState, newest_chunk
from .attributes import Attributes
from .cursor import Gap
from .subscriber import Subscriber, PublisherLeft
from .publisher import Publisher, Published
from .blob import Blob, InvalidBlob, NotABlob
from . import aio

__version__ = "0.1.0"

__all__ = ["latest", "lookup_chunk", "Blob", "InvalidBlob", "NotABlob", "Subscriber", "Publisher", "Published", "Segment", "Chunk", "Gap", "PublisherLeft", "LiveState", "newest_chunk",
           "Attributes", "ShmBusError", "SegmentError", "NotSealed", "BadHeader", "UnsupportedVersion", "BadRecord",
           "BadAttributes", "NotAnArray", "BadDoorbell", "BusError", "NotFound", "AccessDenied", "InvalidArgument", "QuotaExceeded",
           "ChannelBusy", "Unavailable", "BadReply"]


def lookup_chunk(channel, key, bus=None):
    """What the registry says of the newest live chunk of `key` (``LookupChunk``):
    segment, payload offset, length, sequence and info (``timestamp``, ``expiry``,
    ``attributes``), without mapping anything. :func:`latest` maps it."""
    from .registry import Registry
    with Registry(bus) as registry:
        return registry.lookup_chunk(channel, key)


def latest(channel, key, bus=None, registry=None):
    """The newest live chunk of `key` in `channel` (``Lookup``, then ``OpenSegment``),
    as a :class:`Chunk` whose ``payload`` is a zero-copy memoryview of the segment.

    The registry's answer is checked, not believed: the record at the offset it names
    must be a valid, live record of that key and length, of the channel asked for;
    else the lookup is made again (the chunk may have been replaced in between), and
    after a few tries the error is raised. NotFound when there is no such chunk.
    `bus` as :func:`shmbus.registry.connect`; or pass an open `registry`.
    """
    from .registry import Registry
    own = registry is None
    registry = Registry(bus) if own else registry
    try:
        problem = None
        for _ in range(5):
            found = registry.lookup(channel, key)
            try:
                got = registry.open_segment(found.segment)
            except NotFound:
                continue          # collected between the two calls: look again
            try:
                segment = Segment(got.fd)
            finally:
                os.close(got.fd)
                if got.doorbell is not None:
                    os.close(got.doorbell)
            if segment.name != found.segment or segment.channel != channel:
                raise SegmentError("the registry handed out segment %s of channel %r for %s of %r"
                                   % (segment.name, segment.channel, found.segment, channel))
            chunk = segment.chunk_at_payload(found.offset, found.length)
            if chunk is not None and chunk.key == key and chunk.sequence == found.sequence:
                return chunk
            problem = ("segment %s has no live chunk of key %r with %d bytes at offset %d (sequence %d)"
                       % (found.segment, key, found.length, found.offset, found.sequence))
            segment.close()
        raise NotFound("channel %r, key %r: %s" % (channel, key, problem or "its segment went away"))
    finally:
        if own:
            registry.close()
