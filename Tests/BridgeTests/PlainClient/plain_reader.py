"""Reads a bridged channel with nats-py alone, from docs/BRIDGE.md ("Reading a channel
without ShmBus"): no ShmBus code. Prints one JSON object per chunk, in sequence order.

usage: plain_reader.py SERVERS STREAM CHANNEL COUNT
"""
import asyncio
import base64
import hashlib
import json
import sys

import nats
from nats.js.api import DeliverPolicy

PLAIN = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def encode(text):
    return "".join(chr(b) if b in PLAIN else "%%%02X" % b for b in text.encode())


def decode(token):
    if token == "%":
        return ""
    out, i = bytearray(), 0
    while i < len(token):
        if token[i] == "%":
            out.append(int(token[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode()


async def main(servers, stream, channel, count):
    nc = await nats.connect(servers=servers.split(","))
    js = nc.jetstream()
    subject = "shmbus.%s.*.*.%s" % (stream, ".".join(encode(c) for c in channel.split("/")))
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    chunks, done = {}, []
    while len(done) < count:
        msg = await sub.next_msg(timeout=60)
        h = msg.headers
        sequence = int(h["Shmbus-Sequence"])
        chunk = chunks.setdefault(sequence, {"parts": {}, "headers": {}})
        chunk["parts"][int(h["Shmbus-Part"])] = (int(h["Shmbus-Offset"]), msg.data)
        chunk["headers"].update(h)
        if len(chunk["parts"]) == int(h["Shmbus-Parts"]):
            payload = bytearray(int(h["Shmbus-Length"]))
            for offset, data in chunk["parts"].values():
                payload[offset:offset + len(data)] = data
            digest = chunk["headers"]["Shmbus-Digest"]
            assert digest == "sha-256=" + hashlib.sha256(payload).hexdigest(), "digest mismatch"
            done.append({
                "sequence": sequence,
                "key": decode(chunk["headers"]["Shmbus-Key"]),
                "parts": len(chunk["parts"]),
                "payload": base64.b64encode(payload).decode(),
                "attributes": chunk["headers"].get("Shmbus-Attributes"),
            })
    for chunk in sorted(done, key=lambda c: c["sequence"]):
        print(json.dumps(chunk))
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
