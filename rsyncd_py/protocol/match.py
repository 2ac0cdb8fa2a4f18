"""The sender's block search (`match.c:match_sums` / `hash_search`), vectorised.

Given the receiver's block sums of its basis file, find every place in the new file where
a basis block occurs, and describe the file as `Literal` runs and `Match` references.

Theory of operation. Data arrives in pieces (`feed`) and is kept in one buffer that
starts at the first undecided byte. The search position `pos` walks it:

1. **Aligned run** (perf-anchors.md section 4d). If the blocks at `pos`, `pos + b`, ...
   are the blocks `want`, `want + 1`, ... of the basis (an unchanged or edited-in-place
   region), they are confirmed a run at a time: numpy weak sums of the run compared in
   one go, then strong sums of the weak-equal prefix. The run length doubles on success
   and drops to one block on a miss, so a miss costs a single block.
2. **Rolling scan** (`hash_search`). Otherwise sum1 of the window at every offset of the
   next chunk (64 KiB of offsets, cache-resident) comes from two prefix sums; a bitmap
   of the basis sums' hashes drops almost every offset, `searchsorted` confirms the
   rest; only those offsets are walked in Python: the window's strong sum is computed
   once and compared with every basis block of that weak sum (preferring `want`, rsync's
   want_i, so runs stay consecutive; at most MAX_CHAIN_LEN blocks per offset). A match
   emits the literal bytes before it and moves `pos` past the block.

Everything before `pos` is decided: literal bytes are emitted as the search passes them,
and the buffer is trimmed, so memory holds one chunk plus one block besides the sums,
whatever the file size. A window shorter than a block exists only at the end of the file,
where only the basis's short last block can match it (`finish`).

Invariants: `_buf` starts at the first byte not yet emitted; `_pos` >= `_literal_start`
>= 0 (buffer indices); bytes in `[_literal_start, _pos)` are literal; `_want` is the
block a match would best be (the one after the last match).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from .checksums import new_block_digest, weak_block_sums, weak_sum
from .tokens import Literal, Match

__all__ = ["MAX_CHAIN_LEN", "BlockSums", "Matcher"]

MAX_CHAIN_LEN: Final = 1024  # match.c: basis blocks compared at one offset at most
SCAN_OFFSETS: Final = 64 << 10  # offsets rolled per numpy pass
MAX_ALIGNED_RUN: Final = 256  # blocks confirmed per aligned-run attempt at most
_BITMAP_BITS: Final = 23
_HASH_MULT: Final = np.uint32(0x9E3779B1)

Item = Literal | Match


@dataclass(frozen=True, slots=True)
class BlockSums:
    """The receiver's sum_head and block sums (`struct sum_struct`).

    `sum1` holds each block's rolling sum (uint32); `sum2` the concatenated strong sums,
    `s2length` bytes each. The last block is `remainder` bytes when that is not 0.
    """

    count: int
    blength: int
    s2length: int
    remainder: int
    sum1: np.ndarray
    sum2: bytes

    @classmethod
    def from_wire(
        cls, count: int, blength: int, s2length: int, remainder: int, raw: bytes
    ) -> BlockSums:
        """Split the interleaved wire records (int32 sum1 + s2length bytes) of `count` blocks."""
        fields = [("sum1", "<u4"), ("sum2", f"V{s2length}")] if s2length else [("sum1", "<u4")]
        record = np.dtype(fields)
        if len(raw) != count * record.itemsize:
            raise ValueError(f"{len(raw)} bytes of sums for {count} blocks of {record.itemsize}")
        table = np.frombuffer(raw, dtype=record)
        strong = table["sum2"].tobytes() if s2length else b""
        return cls(count, blength, s2length, remainder, table["sum1"].astype(np.uint32), strong)

    def block_len(self, index: int) -> int:
        """The length of block `index`."""
        return self.remainder if index == self.count - 1 and self.remainder else self.blength

    def strong(self, index: int) -> bytes:
        """Block `index`'s (truncated) strong sum."""
        return self.sum2[index * self.s2length : (index + 1) * self.s2length]


class _WeakIndex:
    """Lookup from a sum1 value to the basis blocks that have it."""

    def __init__(self, sums: BlockSums) -> None:
        order = np.argsort(sums.sum1, kind="stable")
        self.sorted_sums = sums.sum1[order]
        self.order = order
        present = np.zeros(1 << _BITMAP_BITS, dtype=np.bool_)
        present[self.slot(sums.sum1)] = True
        # packed 8 slots a byte: a 2^23-bit map is 1 MiB and stays in cache
        self.bitmap = np.packbits(present, bitorder="little")

    @staticmethod
    def slot(values: np.ndarray) -> np.ndarray:
        return (values * _HASH_MULT) >> np.uint32(32 - _BITMAP_BITS)

    def hits(self, weak: np.ndarray) -> np.ndarray:
        """The indices of `weak` whose value some basis block has."""
        slots = self.slot(weak)
        bits = self.bitmap[slots >> np.uint32(3)] >> (slots & np.uint32(7)).astype(np.uint8)
        maybe = np.flatnonzero(bits & np.uint8(1))
        if not len(maybe):
            return maybe
        values = weak[maybe]
        at = np.searchsorted(self.sorted_sums, values)
        at[at == len(self.sorted_sums)] = 0
        return maybe[self.sorted_sums[at] == values]

    def blocks(self, value: int) -> list[int]:
        """The basis blocks whose sum1 is `value`, highest index first (rsync's chain)."""
        key = np.uint32(value)  # a Python int would make numpy promote the whole table
        low = int(self.sorted_sums.searchsorted(key, side="left"))
        high = int(self.sorted_sums.searchsorted(key, side="right"))
        return self.order[low:high][::-1].tolist()


def _rolling_sums(window: np.ndarray, k: int) -> np.ndarray:
    """sum1 of every k-byte window of the int8 array `window` (len >= k)."""
    prefix = np.zeros(len(window) + 1, dtype=np.uint32)
    np.cumsum(window, dtype=np.uint32, out=prefix[1:])
    second = np.zeros(len(window) + 1, dtype=np.uint32)
    np.cumsum(prefix[1:], dtype=np.uint32, out=second[1:])
    starts = len(window) - k + 1
    s1 = prefix[k : k + starts] - prefix[:starts]
    s2 = second[k : k + starts] - second[:starts] - np.uint32(k) * prefix[:starts]
    return (s1 & np.uint32(0xFFFF)) | (s2 << np.uint32(16))


class Matcher:
    """Turns a file's bytes into Literal and Match items against one BlockSums."""

    def __init__(
        self, sums: BlockSums, strong_name: str, protocol: int, seed: int, seed_fix: bool
    ) -> None:
        del protocol  # the strong sums depend on the checksum, seed and seed order only
        self._sums = sums
        self._digest: Callable[[bytes | memoryview], bytes] = new_block_digest(
            strong_name, seed=seed, seed_fix=seed_fix
        )
        self._index = _WeakIndex(sums) if sums.count else None
        self._buf = bytearray()
        self._pos = 0
        self._literal_start = 0
        self._want = 0
        self._run = 1
        self._try_aligned = True  # at the file's start and right after each match
        self._finished = False

    # --- the API -------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        """Add the next bytes of the file; return the items now decided."""
        if self._finished:
            raise ValueError("feed() after finish()")
        self._buf += data
        out: list[Item] = []
        if self._index is None:
            self._pos = len(self._buf)
        else:
            k = self._sums.blength
            # decide offsets only while a whole block past them is buffered
            while len(self._buf) - self._pos >= k + SCAN_OFFSETS:
                self._step(self._pos + SCAN_OFFSETS, out)
                self._flush_literal(out)
        self._flush_literal(out)
        self._trim()
        return out

    def finish(self) -> list[Item]:
        """Signal the end of the file; return the remaining items."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        out: list[Item] = []
        if self._index is not None:
            k = self._sums.blength
            while len(self._buf) - self._pos >= k:
                self._step(min(self._pos + SCAN_OFFSETS, len(self._buf) - k + 1), out)
                self._flush_literal(out)
            self._match_short_tail(out)
        self._pos = len(self._buf)
        self._flush_literal(out)
        self._trim()
        return out

    # --- the search ----------------------------------------------------------------------
    def _step(self, limit: int, out: list[Item]) -> None:
        """Decide every window start before `limit` (all full windows are buffered)."""
        if self._try_aligned and self._aligned_run(limit, out):
            return
        k = self._sums.blength
        view = np.frombuffer(self._buf, dtype=np.int8)
        start = self._pos
        weak = _rolling_sums(view[start : limit + k - 1], k)
        assert self._index is not None
        hits = self._index.hits(weak)
        for hit in hits.tolist():
            at = start + hit
            if at < self._pos:
                continue  # inside a block matched since
            index = self._verify(at, int(weak[hit]), k)
            if index is None:
                continue
            self._emit_match(at, index, out)
            if self._pos >= limit or (self._try_aligned and self._aligned_run(limit, out)):
                return
        self._pos = max(self._pos, limit)

    def _aligned_run(self, limit: int, out: list[Item]) -> bool:
        """Confirm the blocks after the last match at `pos` in bulk; True if any matched."""
        sums = self._sums
        k = sums.blength
        matched_any = False
        while self._pos < limit:
            want = self._want
            # full windows only: a short last block matches only at the file's end
            blocks_left = sums.count - want - (1 if sums.remainder else 0)
            run = min(self._run, (len(self._buf) - self._pos) // k, MAX_ALIGNED_RUN, blocks_left)
            if run <= 0:
                break
            region = bytes(memoryview(self._buf)[self._pos : self._pos + run * k])
            equal = weak_block_sums(region, k) == sums.sum1[want : want + run]
            good = run if equal.all() else int(np.argmin(equal))
            confirmed = self._confirm_strong(region, want, good)
            for _ in range(confirmed):
                self._emit_match(self._pos, self._want, out)
            if confirmed < run:
                self._run = 1
                self._try_aligned = confirmed > 0  # retry after a match, not mid-literal
                return matched_any or confirmed > 0
            matched_any = True
            self._run = min(self._run * 2, MAX_ALIGNED_RUN)
        return matched_any

    def _confirm_strong(self, region: bytes, want: int, count: int) -> int:
        """Count the leading blocks of `region` whose strong sums are basis blocks `want`...

        Only the first `count` blocks are checked; counting stops at the first mismatch.
        """
        sums = self._sums
        k, width = sums.blength, sums.s2length
        view = memoryview(region)
        strong = b"".join(self._digest(view[i * k : (i + 1) * k])[:width] for i in range(count))
        expected = sums.sum2[want * width : (want + count) * width]
        if strong == expected:
            return count
        return next(
            i
            for i in range(count)
            if strong[i * width : (i + 1) * width] != expected[i * width : (i + 1) * width]
        )

    def _verify(self, at: int, weak: int, length: int) -> int | None:
        """The basis block whose sums match the window at `at`, or None (strong check)."""
        assert self._index is not None
        sums = self._sums
        strong: bytes | None = None
        chosen = None
        for count, index in enumerate(self._index.blocks(weak)):
            if count >= MAX_CHAIN_LEN:
                break
            if sums.block_len(index) != length:
                continue
            if strong is None:
                window = memoryview(self._buf)[at : at + length]
                strong = self._digest(window)[: sums.s2length]
                window.release()
            if strong == sums.strong(index):
                chosen = index
                break
        if chosen is None:
            return None
        want = self._want
        if (
            chosen != want
            and want < sums.count
            and int(sums.sum1[want]) == weak
            and sums.block_len(want) == length
            and strong == sums.strong(want)
        ):
            return want  # keep runs consecutive for the token coder
        return chosen

    def _match_short_tail(self, out: list[Item]) -> None:
        """At the end, the basis's short last block can match the file's last bytes."""
        sums = self._sums
        if not sums.remainder:
            return
        at = len(self._buf) - sums.remainder
        if at < self._pos:
            return
        tail = memoryview(self._buf)[at:]
        weak = weak_sum(tail)
        tail.release()
        index = self._verify(at, weak, sums.remainder)
        if index is not None:
            self._emit_match(at, index, out)

    def _emit_match(self, at: int, index: int, out: list[Item]) -> None:
        self._pos = at
        self._flush_literal(out)
        out.append(Match(index))
        self._pos = at + self._sums.block_len(index)
        self._literal_start = self._pos
        self._want = index + 1
        self._try_aligned = True

    def _flush_literal(self, out: list[Item]) -> None:
        """Emit the literal bytes the search has passed."""
        if self._pos > self._literal_start:
            out.append(Literal(bytes(memoryview(self._buf)[self._literal_start : self._pos])))
        self._literal_start = self._pos

    def _trim(self) -> None:
        """Drop the decided bytes (only between searches: numpy views pin the buffer)."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = self._literal_start = 0
