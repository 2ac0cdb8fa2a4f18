"""Block-checksum headers and sizes (io.c read/write_sum_head, generator.c sum_sizes_sqroot).

A sum head is four ints: block count, block length, strong-sum length (protocol 27+)
and the length of the short last block. The generator chooses them from the basis
file's length; a head of all zeros asks the sender for the whole file. The receiver
reads back the head the sender echoes, validated as rsync 3.4+ validates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsyncd_py.protocol.constants import (
    BLOCK_SIZE,
    BLOCKSUM_BIAS,
    MAX_BLOCK_SIZE,
    OLD_MAX_BLOCK_SIZE,
    SUM_LENGTH,
)
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.ints import Cursor, pack_int


@dataclass(frozen=True, slots=True)
class SumHead:
    """struct sum_struct's wire part."""

    count: int = 0
    blength: int = 0
    s2length: int = 0
    remainder: int = 0

    def block_range(self, index: int) -> tuple[int, int]:
        """Return (offset, length) of block `index` in the basis file."""
        length = self.remainder if index == self.count - 1 and self.remainder else self.blength
        return index * self.blength, length

    @property
    def basis_length(self) -> int:
        """The length of the file the sums describe."""
        if not self.count:
            return 0
        return (self.count - 1) * self.blength + (self.remainder or self.blength)


WHOLE_FILE = SumHead()


def max_block_length(protocol: int) -> int:
    return MAX_BLOCK_SIZE if protocol >= 30 else OLD_MAX_BLOCK_SIZE


def sum_sizes_sqroot(
    length: int,
    *,
    protocol: int,
    xfer_sum_len: int,
    block_size: int = 0,
    redo: bool = False,
) -> SumHead:
    """generator.c sum_sizes_sqroot: block length ~ sqrt(length), s2length by bias.

    `block_size` is the -B option (0 = choose); `redo` is the second pass, which asks
    for full-length strong sums (csum_length == SUM_LENGTH).
    """
    max_s2length = min(SUM_LENGTH, xfer_sum_len)
    if block_size:
        blength = block_size
    elif length <= BLOCK_SIZE * BLOCK_SIZE:
        blength = BLOCK_SIZE
    else:
        max_blength = max_block_length(protocol)
        c = 1
        rest = length >> 2
        while rest:
            c <<= 1
            rest >>= 2
        if c >= max_blength:
            blength = max_blength
        else:
            blength = 0
            while c >= 8:
                blength |= c
                if length < blength * blength:
                    blength &= ~c
                c >>= 1
            blength = max(blength, BLOCK_SIZE)

    if protocol < 27:
        s2length = 2
    elif redo:
        s2length = max_s2length
    else:
        b = BLOCKSUM_BIAS
        rest = length >> 1
        while rest:
            b += 2
            rest >>= 1
        c = blength >> 1
        while c and b:
            b -= 1
            c >>= 1
        s2length = (b + 1 - 32 + 7) // 8
        s2length = min(max(s2length, 2), max_s2length)

    remainder = length % blength
    count = length // blength + (1 if remainder else 0)
    return SumHead(count=count, blength=blength, s2length=s2length, remainder=remainder)


def pack_sum_head(head: SumHead, protocol: int) -> bytes:
    """io.c write_sum_head."""
    out = pack_int(head.count) + pack_int(head.blength)
    if protocol >= 27:
        out += pack_int(head.s2length)
    return out + pack_int(head.remainder)


def read_sum_head(cur: Cursor, *, protocol: int, xfer_sum_len: int) -> SumHead:
    """io.c read_sum_head, with rsync 3.4's bounds checks."""
    count = cur.int32()
    if count < 0:
        raise RemoteProtocolError(f"Invalid checksum count {count}")
    blength = cur.int32()
    if blength < 0 or blength > max_block_length(protocol):
        raise RemoteProtocolError(f"Invalid block length {blength}")
    if count and blength == 0:
        raise RemoteProtocolError("Invalid zero block length")
    s2length = cur.int32() if protocol >= 27 else 2
    if s2length < 0 or s2length > xfer_sum_len:
        raise RemoteProtocolError(f"Invalid checksum length {s2length}")
    remainder = cur.int32()
    if remainder < 0 or remainder > blength:
        raise RemoteProtocolError(f"Invalid remainder length {remainder}")
    return SumHead(count, blength, s2length, remainder)


def pack_block_sums(weak: np.ndarray, strong: bytes, s2length: int) -> bytes:
    """Interleave each block's int32 rolling sum with its `s2length`-byte strong sum.

    `weak` holds the uint32 sum1 of every block; `strong` their concatenated strong sums.
    Done with one numpy record array, so there is no Python loop per block.
    """
    count = len(weak)
    if len(strong) != count * s2length:
        raise ValueError("strong sums do not match the block count")
    record = (
        np.dtype([("sum1", "<u4"), ("sum2", f"V{s2length}")])
        if s2length
        else np.dtype([("sum1", "<u4")])
    )
    out = np.empty(count, dtype=record)
    out["sum1"] = weak
    if s2length:
        out["sum2"] = np.frombuffer(strong, dtype=f"V{s2length}")
    return out.tobytes()
