"""The asyncio form of the subscriber::

    async for event in shmbus.aio.subscribe("camera/0", start="oldest"):
        ...

dbus-python has no asyncio integration and a futex wait blocks its thread, so each
subscription runs its :class:`~shmbus.subscriber.Subscriber` on a worker thread of
its own (one thread: a Subscriber has one owner), and the event loop awaits batches
of events from it: whatever is ready is handed over in one hop, and the loop is never
blocked. Leaving the ``async for`` (break, an exception, cancellation) closes the
subscription once the worker's current wait ends (within 0.25 s).
"""
import asyncio
import concurrent.futures

from .subscriber import Subscriber

__all__ = ["subscribe", "latest"]

_STEP = 0.25


async def subscribe(channel, bus=None, start="now", wait="futex", **options):
    """An async generator of the events of :class:`~shmbus.subscriber.Subscriber`
    (same arguments). Bus errors and corrupt segments are raised from it."""
    loop = asyncio.get_running_loop()
    worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shmbus-aio")
    subscriber = None
    try:
        subscriber = await loop.run_in_executor(
            worker, lambda: Subscriber(channel, bus=bus, start=start, wait=wait, **options))
        while True:
            events = await loop.run_in_executor(worker, subscriber.next_events, 256, _STEP)
            if not events and (subscriber._ended or subscriber._closed):
                return
            for event in events:
                yield event
    finally:
        if subscriber is not None:
            worker.submit(subscriber.close)
        worker.shutdown(wait=False)


async def latest(channel, key, bus=None):
    """:func:`shmbus.latest` without blocking the event loop."""
    from . import latest as blocking_latest
    return await asyncio.get_running_loop().run_in_executor(None, lambda: blocking_latest(channel, key, bus=bus))
