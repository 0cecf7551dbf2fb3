"""The format reader against hand-made segments (FORMAT.md's own vectors, then every
rule of "Validation" broken in turn, each raising its typed exception), against
copies of a Swift-written segment with bits flipped at random, and against a hostile
Swift publisher scribbling over its own live segment: never anything but a
SegmentError, never a crash."""
import os
import random
import struct

import pytest

import shmbus
from shmbus import format as F
from shmbus import BadHeader, BadRecord, NotSealed, SegmentError, UnsupportedVersion
from shmbus.registry import Registry

import craft


def test_mix64_matches_the_documents_vectors():
    data = bytes(range(1, 65))
    rows = [(0, F.RECORD_SEED, 0x53484d4255535243), (1, F.RECORD_SEED, 0x8b211b5fb9c96db5),
            (7, F.RECORD_SEED, 0x151342f62b109ade), (8, F.RECORD_SEED, 0xbd1342f36b109ade),
            (9, F.RECORD_SEED, 0x21dd19d1306a1922), (64, F.RECORD_SEED, 0x185b3d9e68fe2a4a),
            (9, F.HEADER_SEED, 0x973f4cf50cf8012f), (64, F.HEADER_SEED, 0xc0c1be4154fc3c34)]
    for length, seed, value in rows:
        assert F.mix64(data[:length], seed) == value, length


def test_the_documents_real_record_is_read_as_documented():
    vector = bytes.fromhex("43484e4b00000000c00000000000000001000000000000000000faed517286180000000000000000"
                           "140000000000000080000000060000000c7d8701dbe2b9ed")
    made = craft.record(1, "latest", b"hello, shared memory")
    assert made[:64] == vector
    fd = craft.memfd(craft.segment(records=[made]))
    try:
        with shmbus.Segment(fd) as segment:
            (chunk,) = list(segment.records())
            assert (chunk.sequence, chunk.key, bytes(chunk.payload), chunk.length) == (1, "latest", b"hello, shared memory", 192)
            assert chunk.payload_offset == 4096 + 128 and segment.name == bytes(range(1, 17)).hex()
    finally:
        os.close(fd)


def good_records():
    return [craft.record(1, "a", b"x" * 10), craft.record(2, "", b"y" * 100), craft.record(3, "key/3", b"z" * 64)]


def verdict(data, seals=F.REQUIRED_SEALS, size=None):
    """The exception reading `data` as a sealed segment raises (header, then every
    record), or None."""
    fd = craft.memfd(data, seals, size)
    try:
        segment = shmbus.Segment(fd)
        list(segment.records())
        segment.live_state()
        return None
    except Exception as error:          # anything but a SegmentError fails the caller's check
        return error
    finally:
        os.close(fd)


def corrupt_header(mutate):
    data = craft.segment(records=good_records())
    mutate(data)
    return data


def with_checksum(data):
    struct.pack_into("<Q", data, 272, F.mix64(bytes(data[:272]), F.HEADER_SEED))
    return data


HEADER_CASES = [
    ("magic", lambda d: struct.pack_into("<Q", d, 0, 0x1234), BadHeader, "magic is 0x1234"),
    ("version", lambda d: with_checksum(struct.pack_into("<I", d, 8, 2) or d), UnsupportedVersion,
     "format version 2 is not supported (this reader knows 1)"),
    ("header size", lambda d: with_checksum(struct.pack_into("<I", d, 12, 8192) or d), BadHeader, "header size 8192"),
    ("checksum", lambda d: d.__setitem__(100, d[100] ^ 1), BadHeader, "header checksum mismatch"),
    ("capacity past the file", lambda d: with_checksum(struct.pack_into("<Q", d, 16, 1 << 30) or d), BadHeader,
     "within the file's"),
    ("capacity not a page multiple", lambda d: with_checksum(struct.pack_into("<Q", d, 16, 3 * 4096 + 8) or d),
     BadHeader, "is not a multiple of 4096"),
    ("channel length 0", lambda d: with_checksum(struct.pack_into("<H", d, 68, 0) or d), BadHeader,
     "channel name length 0"),
    ("channel length 201", lambda d: with_checksum(struct.pack_into("<H", d, 68, 201) or d), BadHeader,
     "channel name length 201"),
    ("channel name invalid", lambda d: with_checksum(d.__setitem__(slice(72, 74), b"//") or d), BadHeader,
     "an empty component"),
    ("channel not UTF-8", lambda d: with_checksum(d.__setitem__(72, 0xff) or d), BadHeader, "not UTF-8"),
    ("zero ID", lambda d: with_checksum(d.__setitem__(slice(24, 40), bytes(16)) or d), BadHeader, "segment ID is zero"),
    ("committed end past capacity", lambda d: struct.pack_into("<Q", d, F.COMMITTED_END, 1 << 40), BadHeader,
     "committed end"),
    ("committed end unaligned", lambda d: struct.pack_into("<Q", d, F.COMMITTED_END, 4096 + 65), BadHeader,
     "committed end 4161"),
    ("committed end below the header", lambda d: struct.pack_into("<Q", d, F.COMMITTED_END, 64), BadHeader,
     "committed end 64"),
    ("retired without a successor", lambda d: (d.__setitem__(slice(520, 536), bytes(16)),
                                               struct.pack_into("<I", d, F.STATE, 1)), BadHeader,
     "retired without a valid successor"),
    ("retired naming itself", lambda d: (d.__setitem__(slice(520, 536), bytes(range(1, 17))),
                                         struct.pack_into("<I", d, F.STATE, 1)), BadHeader,
     "retired without a valid successor"),
]


@pytest.mark.parametrize("what,mutate,kind,message", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_a_bad_header_raises_its_typed_error(what, mutate, kind, message):
    error = verdict(corrupt_header(mutate))
    assert type(error) is kind, "%s: %r" % (what, error)
    assert message in str(error), str(error)


R2 = 4096 + 192          # the second record's offset (the first, key "a" and 10 bytes, takes 192)


def record_case(mutate, fix_checksum=True):
    records = good_records()
    second = bytearray(records[1])
    mutate(second)
    if fix_checksum:
        key_length = struct.unpack_from("<H", second, 52)[0]
        h = bytearray(second[:56])
        h[4:8] = b"\0\0\0\0"
        key = bytes(second[64:64 + min(key_length, len(second) - 64)])
        struct.pack_into("<Q", second, 56, F.mix64(key, F.mix64(bytes(h), F.RECORD_SEED)))
    records[1] = bytes(second)
    return craft.segment(records=records)


RECORD_CASES = [
    ("magic", lambda r: r.__setitem__(slice(0, 4), b"KNHC"), "magic is 0x43484e4b"),
    ("length 0", lambda r: struct.pack_into("<Q", r, 8, 0), "length 0 is not a multiple of 64"),
    ("length unaligned", lambda r: struct.pack_into("<Q", r, 8, 200), "length 200"),
    ("length past the committed end", lambda r: struct.pack_into("<Q", r, 8, 1 << 20), "length 1048576"),
    ("key length 300", lambda r: struct.pack_into("<H", r, 52, 300), "key length 300 exceeds 255"),
    ("payload offset unaligned", lambda r: struct.pack_into("<I", r, 48, 100), "payload offset 100"),
    ("payload offset over the key", lambda r: (struct.pack_into("<H", r, 52, 70), struct.pack_into("<I", r, 48, 128)),
     "payload offset 128 overlaps"),
    ("payload past the record", lambda r: struct.pack_into("<Q", r, 40, 1000), "runs past the record's"),
    ("payload length huge", lambda r: struct.pack_into("<Q", r, 40, (1 << 64) - 1), "runs past the record's"),
    ("payload offset past the record", lambda r: struct.pack_into("<I", r, 48, 1 << 20), "runs past the record's"),
]


@pytest.mark.parametrize("what,mutate,message", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_a_bad_record_raises_bad_record_naming_its_offset(what, mutate, message):
    error = verdict(record_case(mutate))
    assert type(error) is BadRecord, "%s: %r" % (what, error)
    assert error.offset == R2 and message in str(error), str(error)


def test_a_record_checksum_and_a_non_utf8_key_are_caught():
    error = verdict(record_case(lambda r: struct.pack_into("<Q", r, 24, 5), fix_checksum=False))
    assert type(error) is BadRecord and "checksum mismatch" in str(error) and error.offset == R2
    records = good_records()
    records[1] = craft.record(2, b"\xff\xfe", b"y")
    error = verdict(craft.segment(records=records))
    assert type(error) is BadRecord and "key is not UTF-8" in str(error)
    # The flags word is not covered, and other bits than obsolete are ignored.
    records = good_records()
    records[1] = craft.record(2, "", b"y" * 100, flags=0xfffffffe)
    fd = craft.memfd(craft.segment(records=records))
    with shmbus.Segment(fd) as segment:
        assert [c.sequence for c in segment.chunks()] == [1, 2, 3]
    os.close(fd)


def test_unsealed_and_partly_sealed_and_non_memfd_files_are_refused(tmp):
    data = craft.segment(records=good_records())
    assert type(verdict(data, seals=0)) is NotSealed
    partly = verdict(data, seals=F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_SEAL)
    assert type(partly) is NotSealed and "0x17 are required" in str(partly)
    assert verdict(data, seals=F.REQUIRED_SEALS | F.F_SEAL_WRITE) is None   # extra seals are fine
    path = os.path.join(tmp, "segment")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(NotSealed, match="is not a memfd"):
        shmbus.Segment(path)
    with shmbus.Segment(path, require_seals=False) as segment:      # a copy one owns
        assert len(list(segment.records())) == 3
    small = verdict(bytes(4096))
    assert type(small) is BadHeader and "at least 8192" in str(small)
    with pytest.raises(SegmentError, match="cannot open"):
        shmbus.Segment(os.path.join(tmp, "missing"))


def test_a_bad_doorbell_raises_bad_doorbell():
    from shmbus.doorbell import Doorbell
    fd = craft.memfd(bytes(4096), seals=0)
    with pytest.raises(shmbus.BadDoorbell, match="seals"):
        Doorbell(fd)
    os.close(fd)
    fd = craft.memfd(bytes(100), seals=F.DOORBELL_SEALS)
    with pytest.raises(shmbus.BadDoorbell, match="100 bytes"):
        Doorbell(fd)
    os.close(fd)


def swift_segment_bytes(peers, channel):
    peer = peers.test_peer("publish", channel, 40, 300, 64 * 1024)
    assert peer.stdout.readline().startswith(b"ready")
    assert peer.stdout.readline().startswith(b"published 40")
    with Registry(peers.address) as registry:
        current, _ = registry.current_segment(channel)
        opened = registry.open_segment(current)
        os.close(opened.doorbell) if opened.doorbell is not None else None
        size = os.fstat(opened.fd).st_size
        data = os.pread(opened.fd, size, 0)
        os.close(opened.fd)
    return bytearray(data)


def test_random_corruption_of_a_swift_segment_raises_only_segment_errors(peers, channel):
    original = swift_segment_bytes(peers, channel)
    end = struct.unpack_from("<Q", original, F.COMMITTED_END)[0]
    assert verdict(original) is None
    rng = random.Random(15)
    caught = 0
    # Header bytes covered by the checksum, the mutable words, and record headers and keys.
    spots = list(range(0, 280)) + list(range(384, 536)) + list(range(4096, end))
    for trial in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            spot = rng.choice(spots)
            data[spot] ^= 1 << rng.randrange(8)
        error = verdict(data)
        assert error is None or isinstance(error, SegmentError), "trial %d: %r" % (trial, error)
        caught += error is not None
    assert caught > 100      # most flips land in checked bytes (payload bytes are not covered)


def test_a_hostile_publisher_scribbling_over_its_segment_gets_typed_errors(peers, channel):
    """shmbus-test-peer scribble writes random bytes over its own live segment through
    its writable mapping; a subscriber reading it sees chunks or a SegmentError."""
    peer = peers.test_peer("scribble", channel, 7)
    assert peer.stdout.readline().startswith(b"ready")
    outcomes = {"error": 0, "read": 0}
    for _ in range(30):
        peer.stdin.write(b"x\n")
        peer.stdin.flush()
        assert peer.stdout.readline().startswith(b"scribbled")
        try:
            subscriber = shmbus.Subscriber(channel, bus=peers.address, start="oldest", wait="poll")
        except SegmentError:
            outcomes["error"] += 1
            continue
        try:
            while subscriber.next_event(timeout=0.05) is not None:
                pass
            outcomes["read"] += 1
        except SegmentError:
            outcomes["error"] += 1
        finally:
            subscriber.close()
    assert outcomes["error"] > 0, outcomes
