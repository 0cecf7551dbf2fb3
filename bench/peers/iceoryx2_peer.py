"""The iceoryx2 side of `make bench-peers`: one process per role, driven by run.py.

    python iceoryx2_peer.py ROLE --service NAME [--size N] [--count N] [--rate N] [--seconds S]

Zero-copy as iceoryx2 offers it to Python (iceoryx2 0.10): a publish-subscribe service of
`Slice[c_uint8]`; the publisher loans a slice from its shared-memory pool
(`loan_slice_uninit`), writes into it in place (ctypes.memmove from private memory, or a
stored word), `assume_init()` and `send()`s it; the subscriber's `receive()` gives a
`Sample` whose payload is the same shared memory (its address, `payload_ptr`, read in
place). Blocking waits go through the service's event service: the publisher calls
`Notifier.notify()` after sending, the subscriber sleeps in `Listener.blocking_wait()`
(`timed_wait` in the latency part, 500 ms, never reached in a working run, and 1 ms in
the flood) and then drains `receive()`.

Roles (the same measurements as `shmbus bench`'s blob, latency and throughput parts):
  blob-pub   for each "go" line: loan SIZE bytes, copy the blob in (before the clock),
             clock, send, notify; prints "sent N START CHECKSUM".
  blob-sub   for each sample: shmbus_sum64 over all SIZE bytes in place, clock; prints
             "got N DONE CHECKSUM", then releases the sample.
  lat-pub    COUNT chunks of SIZE bytes at RATE per second: clock, loan, copy SIZE bytes
             in, store the clock in the first 8 bytes, send, notify.
  lat-sub    per sample: now - stored clock; prints one JSON object: the nanoseconds, how
             many waits timed out and how many samples were found only after one.
  flood-pub  SIZE-byte chunks as fast as it goes for SECONDS (sequence number in the first
             8 bytes, the rest copied in), notifying every 256; no safe overflow and
             RetryUntilDelivered, so a full subscriber queue (4096) slows the publisher
             instead of losing chunks (with safe overflow on, iceoryx2's default, the
             first full run lost 111,739 of 1.16 M chunks).
  flood-sub  reads every chunk's sequence number, counts gaps; ends at the sentinel.
"""

import ctypes
import json

import iceoryx2 as iox2

import common

U64 = ctypes.c_uint64
SENTINEL = (1 << 64) - 1
# The subscriber's queue in the latency part. With 2, a subscriber descheduled for 10 ms on
# this shared 2-core machine lost the oldest sample to the overflow (99 of 100 received in
# one of eight trial runs); 64 samples of 4 KiB cost nothing in latency.
LATENCY_QUEUE = 64


def open_service(node, name, size, buffer, overflow=True):
    """`overflow`: whether a full subscriber queue drops its oldest sample (iceoryx2's
    default, "safe overflow"); without it the publisher's backpressure strategy applies."""
    service = (
        node.service_builder(iox2.ServiceName.new(name))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .enable_safe_overflow(overflow)
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .subscriber_max_borrowed_samples(2)
        .open_or_create()
    )
    event = node.service_builder(iox2.ServiceName.new(name + "/event")).event().open_or_create()
    return service, event


def make_publisher(service, size, retry):
    builder = service.publisher_builder().initial_max_slice_len(size).max_loaned_samples(1)
    if retry:
        builder = builder.backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
    return builder.create()


def wait_for_subscriber(service):
    while service.dynamic_config.number_of_subscribers < 1:
        common.time.sleep(0.01)


def blob_pub(node, args):
    service, event = open_service(node, args.service, args.size, 2, overflow=False)
    publisher = make_publisher(service, args.size, retry=True)
    notifier = event.notifier_builder().create()
    wait_for_subscriber(service)
    data = common.blob(args.size)
    expected = common.checksum(data, args.size)
    common.say("ready")
    n = 0
    for line in common.lines():
        if not line.startswith("go"):
            break
        sample = publisher.loan_slice_uninit(args.size)
        ctypes.memmove(sample.payload_ptr, data, args.size)
        sample = sample.assume_init()
        start = common.now()
        sample.send()
        notifier.notify()
        n += 1
        common.say("sent", n, start, format(expected, "x"))


def blob_sub(node, args):
    service, event = open_service(node, args.service, args.size, 2, overflow=False)
    subscriber = service.subscriber_builder().create()
    listener = event.listener_builder().create()
    common.say("ready")
    n = 0
    while n < args.count:
        listener.blocking_wait()
        while (sample := subscriber.receive()) is not None:
            total = common.checksum(sample.payload_ptr, sample.header.number_of_elements)
            done = common.now()
            sample.delete()
            n += 1
            common.say("got", n, done, format(total, "x"))


def lat_pub(node, args):
    service, event = open_service(node, args.service, args.size, LATENCY_QUEUE)
    publisher = make_publisher(service, args.size, retry=False)
    notifier = event.notifier_builder().create()
    wait_for_subscriber(service)
    payload = bytes([7]) * args.size
    common.say("ready")
    next(common.lines())
    begin = common.now()
    undelivered = unwoken = 0
    for i in range(args.count):
        sent = common.now()
        sample = publisher.loan_slice_uninit(args.size)
        address = sample.payload_ptr
        ctypes.memmove(address, payload, args.size)
        U64.from_address(address).value = sent
        undelivered += sample.assume_init().send() == 0
        unwoken += notifier.notify() == 0
        pause = begin + (i + 1) * 1_000_000_000 // args.rate - common.now()
        if pause > 0:
            common.time.sleep(pause / 1e9)
    common.say("done", undelivered, unwoken)
    next(common.lines())  # stays until run.py has the subscriber's figures


def lat_sub(node, args):
    service, event = open_service(node, args.service, args.size, LATENCY_QUEUE)
    subscriber = service.subscriber_builder().create()
    listener = event.listener_builder().create()
    common.say("ready")
    latencies = []
    # Blocking waits with a timeout that a working run should not reach once chunks flow
    # (one every 5 ms): a wait that times out after the first chunk is counted, not hidden,
    # and samples found after it are counted apart (`late`, not in the latencies), so a lost
    # wake-up cannot pass for a fast one. Two seconds without a chunk end the wait.
    patience = iox2.Duration.from_millis(500)
    timeouts = late = silent = 0
    while len(latencies) + late < args.count and silent < 4:
        events = listener.timed_wait(patience)
        started = latencies or late
        if not events and started:
            timeouts += 1
        found = 0
        while (sample := subscriber.receive()) is not None:
            found += 1
            if events:
                latencies.append(common.now() - U64.from_address(sample.payload_ptr).value)
            else:
                late += 1
            sample.delete()
        silent = silent + 1 if started and not found else 0
    common.say(json.dumps({"latencies": latencies, "timeouts": timeouts, "late": late}))


def flood_pub(node, args):
    service, event = open_service(node, args.service, args.size, 4096, overflow=False)
    publisher = make_publisher(service, args.size, retry=True)
    notifier = event.notifier_builder().create()
    wait_for_subscriber(service)
    payload = bytes([1]) * args.size
    common.say("ready")
    next(common.lines())
    start = common.now()
    end = start + int(args.seconds * 1e9)
    published = 0
    memmove, from_address, loan = ctypes.memmove, U64.from_address, publisher.loan_slice_uninit
    while common.now() < end:
        for _ in range(1000):
            sample = loan(args.size)
            address = sample.payload_ptr
            memmove(address, payload, args.size)
            from_address(address).value = published
            sample.assume_init().send()
            published += 1
            if published & 255 == 0:
                notifier.notify()
    finished = common.now()
    sample = loan(args.size)
    from_address(sample.payload_ptr).value = SENTINEL
    sample.assume_init().send()
    notifier.notify()
    common.say("published", published, start, finished)
    next(common.lines())  # stays until the subscriber has read the sentinel


def flood_sub(node, args):
    service, event = open_service(node, args.service, args.size, 4096, overflow=False)
    subscriber = service.subscriber_builder().buffer_size(4096).create()
    listener = event.listener_builder().create()
    common.say("ready")
    received = missed = 0
    expected = 0
    ordered = True
    wait = iox2.Duration.from_millis(1)
    from_address = U64.from_address
    while True:
        listener.timed_wait(wait)
        finished = False
        while (sample := subscriber.receive()) is not None:
            value = from_address(sample.payload_ptr).value
            sample.delete()
            if value == SENTINEL:
                finished = True
                break
            if value < expected:
                ordered = False
            elif value > expected:
                missed += value - expected
            expected = value + 1
            received += 1
        if finished:
            break
    done = common.now()
    common.say("received", received, "missed", missed, "ordered", ordered, "done", done)


ROLES = {
    "blob-pub": blob_pub,
    "blob-sub": blob_sub,
    "lat-pub": lat_pub,
    "lat-sub": lat_sub,
    "flood-pub": flood_pub,
    "flood-sub": flood_sub,
}


def main():
    args = common.arguments(__doc__, ROLES, "--service")
    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ROLES[args.role](node, args)


if __name__ == "__main__":
    main()
