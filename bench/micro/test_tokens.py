"""Token codec throughput: decoding (the receiver's hot path) and encoding, in MB/s of file."""

from __future__ import annotations

import random

import pytest

from bench.micro.throughput import measure
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.tokens import COMPRESSIONS, END, Match, new_token_decoder, new_token_encoder

BLOCK = 8192
rnd = random.Random(2)
WORDS = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
         for _ in range(2000)]
# 16 MiB: half text-like (compressible), half random; literals in 32 KiB pieces with a
# matched block after every 8th piece, as a sender with a 1% changed basis would not
# quite do, but enough to exercise both paths
TEXT = b" ".join(rnd.choice(WORDS) for _ in range(1_500_000))[: 8 << 20]
DATA = TEXT + rnd.randbytes(8 << 20)
BASIS_BLOCK = rnd.randbytes(BLOCK)


def encode(compression: str) -> tuple[bytes, int]:
    encoder = new_token_encoder(compression)
    encoder.start_file()
    parts, total = [], 0
    for n, offset in enumerate(range(0, len(DATA), 32 << 10)):
        piece = DATA[offset : offset + (32 << 10)]
        parts.append(encoder.literal(piece))
        total += len(piece)
        if n % 8 == 7:
            parts.append(encoder.match(n, BASIS_BLOCK))
            total += BLOCK
    parts.append(encoder.end())
    return b"".join(parts), total


def decode(compression: str, wire: bytes) -> int:
    decoder = new_token_decoder(compression)
    decoder.start_file()
    buf = ReceiveBuffer(wire)
    total = 0
    while (item := decoder.next_token(buf)) is not END:
        if isinstance(item, Match):
            decoder.see_match(BASIS_BLOCK)
            total += BLOCK
        else:
            total += len(item.data)
    return total


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_decode(benchmark, compression):
    wire, total = encode(compression)
    decoded = measure(benchmark, f"token decode {compression}", total, decode, compression, wire)
    assert decoded == total


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_encode(benchmark, compression):
    _, total = encode(compression)
    measure(benchmark, f"token encode {compression}", total, encode, compression)
