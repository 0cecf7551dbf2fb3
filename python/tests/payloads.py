"""The payloads shmbus-test-peer publishes (Tests/TestSupport/TestPayload.swift),
regenerated here from the sequence alone, so that a chunk read from Python can be
compared byte for byte with what the Swift publisher must have written."""
import struct

from shmbus.format import MASK64, MULTIPLIER, mix64


def expected(sequence, size):
    """The exact payload of chunk `sequence` at `size` bytes."""
    out = bytearray(size)
    state = ((sequence * MULTIPLIER) & MASK64) | 1
    words = []
    i = 16
    while i + 8 <= size:
        state ^= (state << 13) & MASK64
        state ^= state >> 7
        state ^= (state << 17) & MASK64
        words.append(state)
        i += 8
    struct.pack_into("<%dQ" % len(words), out, 16, *words)
    for j in range(i, size):
        out[j] = j & 0xFF
    struct.pack_into("<Q", out, 0, sequence)
    struct.pack_into("<Q", out, 8, mix64(memoryview(out)[16:], 11))
    return bytes(out)
