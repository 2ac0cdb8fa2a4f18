"""The sender's block search (`match.c:match_sums` / `hash_search`), vectorised.

Given the receiver's block sums of its basis file, find every place in the new file where
a basis block occurs, and describe the file as `Literal` runs and `Match` references.

Theory of operation. Data arrives in pieces (`feed`) and is kept in one buffer that
starts at the first undecided byte. The search position `pos` walks it:

1. **Aligned run** (perf-anchors.md section 4d). In a region unchanged or edited in
   place, the blocks at `pos`, `pos + b`, ... are the blocks `want`, `want + 1`, ... of
   the basis. Every whole block buffered is checked at its place at once: numpy weak
   sums of all of them compared in one go, then strong sums of the weak-equal ones.
   Walking them, a changed block -- or up to MAX_SKIP in a row -- followed by one at its
   place is literal; no offset inside it is rolled. The rolling scan would find the same
   for an in-place edit, at 50-100 times the cost (a 1 GiB file 1% changed: 0.53 CPU-s
   instead of 1.9); any match is valid for the receiver, and inserted or deleted bytes
   leave the next blocks off their places, so the scan still handles those. Deciding a
   block needs the MAX_SKIP blocks after it, so a few blocks wait for the next `feed`.
2. **Rolling scan** (`hash_search`). Otherwise sum1 of the window at every offset of the
   next chunk (64 KiB of offsets, cache-resident) comes from two prefix sums; a bitmap
   of the basis sums' hashes drops almost every offset, `searchsorted` confirms the
   rest; only those offsets are walked in Python: the window's strong sum is computed
   once and compared with every basis block of that weak sum (preferring `want`, rsync's
   want_i, so runs stay consecutive; at most MAX_CHAIN_LEN blocks per offset). A match
   emits the literal bytes before it and moves `pos` past the block.

Everything before `pos` is decided: literal bytes are emitted as the search passes them,
and the buffer is trimmed, so memory holds one chunk plus a few blocks besides the sums,
whatever the file size. A window shorter than a block exists only at the end of the file,
where only the basis's short last block can match it (`finish`).

Invariants: `_buf` starts at the first byte not yet emitted; `_pos` >= `_literal_start`
>= 0 (buffer indices); bytes in `[_literal_start, _pos)` are literal; `_want` is the
block a match would best be (the one after the last match).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from .checksums import new_block_digest, weak_block_sums, weak_sum
from .tokens import Literal, Match

__all__ = ["MAX_CHAIN_LEN", "BlockSums", "Matcher"]

MAX_CHAIN_LEN: Final = 1024  # match.c: basis blocks compared at one offset at most
SCAN_OFFSETS: Final = 64 << 10  # offsets rolled per numpy pass
MAX_SKIP: Final = 4  # changed blocks in a row an aligned run steps over
_BITMAP_BITS: Final = 23
_HASH_MULT: Final = np.uint32(0x9E3779B1)

Item = Literal | Match


class _Aligned(enum.Enum):
    """What an aligned run found at `pos` (see `Matcher._aligned_run`)."""

    MATCHED = enum.auto()  # some blocks matched at their places; `pos` moved past them
    MISSED = enum.auto()  # none did: the rolling scan decides from `pos`
    WAIT = enum.auto()  # not decidable until more of the file is buffered


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
                progressed = self._step(self._pos + SCAN_OFFSETS, out, final=False)
                self._flush_literal(out)
                if not progressed:
                    break
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
                self._step(min(self._pos + SCAN_OFFSETS, len(self._buf) - k + 1), out, final=True)
                self._flush_literal(out)
            self._match_short_tail(out)
        self._pos = len(self._buf)
        self._flush_literal(out)
        self._trim()
        return out

    # --- the search ----------------------------------------------------------------------
    def _step(self, limit: int, out: list[Item], *, final: bool) -> bool:
        """Decide window starts from `pos` on (all full windows before `limit` are buffered).

        Returns False, having decided nothing more, when the aligned run needs more of
        the file first (never when `final`: the whole file is buffered).
        """
        if self._try_aligned:
            aligned = self._aligned_run(out, final)
            if aligned is not _Aligned.MISSED:
                return aligned is _Aligned.MATCHED
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
            if self._pos >= limit:
                return True
            if self._try_aligned and self._aligned_run(out, final) is not _Aligned.MISSED:
                return True
        self._pos = max(self._pos, limit)
        return True

    def _aligned_run(self, out: list[Item], final: bool) -> _Aligned:
        """Match blocks `want`, `want + 1`, ... at their own places from `pos`, in bulk.

        That is where they are in a region left unchanged or edited in place. Every
        whole block in the buffer is checked at once (`_at_their_places`); walking
        them, a changed block (or up to MAX_SKIP of them in a row) followed by one at its
        place is literal, as the rolling scan would find at far greater cost (any match
        is a valid one for the receiver). More changed blocks in a row stop the run:
        MISSED there when nothing matched (the rolling scan takes over at `pos`), else
        MATCHED with `_try_aligned` cleared (the next step scans). Deciding a block needs
        the MAX_SKIP blocks after it: WAIT asks for more of the file first.
        """
        sums = self._sums
        k = sums.blength
        want = self._want
        in_buffer = (len(self._buf) - self._pos) // k
        # whole blocks only: a short last block matches only at the file's end
        in_basis = sums.count - want - (1 if sums.remainder else 0)
        count = min(in_buffer, in_basis)
        decide = count if final or in_basis <= in_buffer else count - MAX_SKIP - 1
        if count <= 0:
            return _Aligned.MISSED
        if decide <= 0:
            return _Aligned.WAIT
        good = self._at_their_places(self._pos, want, count)
        start = self._pos
        matched = False
        i = 0
        while i < decide:
            if not good[i]:
                after = good[i + 1 : i + 1 + MAX_SKIP].tolist()
                if True not in after:
                    self._try_aligned = False
                    return _Aligned.MATCHED if matched else _Aligned.MISSED
                i += 1 + after.index(True)  # blocks i.. are literal: the match flushes them
            end = i + 1
            while end < count and good[end]:
                end += 1
            self._emit_run(start + i * k, want + i, end - i, out)
            matched = True
            i = end
        return _Aligned.MATCHED

    def _at_their_places(self, at: int, want: int, count: int) -> np.ndarray:
        """Whether each of the `count` whole blocks at `at` is basis block `want + i`.

        Weak sums of all of them in one numpy pass, then strong sums of the weak-equal.
        """
        sums = self._sums
        k, width = sums.blength, sums.s2length
        digest = self._digest
        with memoryview(self._buf) as view:
            region = view[at : at + count * k]
            good = weak_block_sums(region, k) == sums.sum1[want : want + count]
            for i in np.flatnonzero(good).tolist():
                first = (want + i) * width
                if digest(region[i * k : (i + 1) * k])[:width] != sums.sum2[first : first + width]:
                    good[i] = False
            region.release()
        return good

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

    def _emit_run(self, at: int, first: int, count: int, out: list[Item]) -> None:
        """`_emit_match` of the `count` whole blocks `first`... found one after another at `at`."""
        self._pos = at
        self._flush_literal(out)
        out += [Match(index) for index in range(first, first + count)]
        self._pos = at + count * self._sums.blength
        self._literal_start = self._pos
        self._want = first + count
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
