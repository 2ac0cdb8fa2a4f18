"""Content-defined chunking of a byte stream that arrives in pieces (FastCDC 2020).

Theory of operation: `pyfastcdc` cuts a buffer in C at several GB/s, but it wants the
whole input (or a stream it pulls from), while file writers push data in arbitrary
pieces. A FastCDC cut point depends only on the bytes since the previous cut, so the
chunker keeps the unfinished tail of the buffer and re-cuts it together with the next
piece: every chunk that ends before the end of the buffer (or reaches `max_size`) is
final; the last one may still grow and is carried over. Cutting is deferred until the
buffer holds `batch` bytes so the tail is not rescanned for every small write. The
result is byte-for-byte the chunking of the whole stream at once (tested), and memory
stays bounded by `batch` plus the size of the caller's largest write.

Splicing (`feed_spliced`, `finish_spliced`): the buffer always starts at a cut point,
and a cut depends only on the bytes after the previous one. So where the caller knows
that the bytes at a cut point are a copy of a block some earlier chunking of the same
parameters cut by content (not at the end of its stream nor before a hole), the next
cut is that block's end: its bytes are skipped (an int in the result) instead of
scanned and copied, and chunking goes on from there. Between such blocks chunks are cut
one at a time, so splicing resumes as soon as the cuts realign with the copy's.

Parameters are fixed per store at `init` (`ChunkParams`, kept in `config.volume`). Note
pyfastcdc's convention: the mean chunk length is about `avg_size + min_size`. The
`seed` perturbs the gear table; encrypted stores derive it from the id key so that
chunk boundaries (visible as object sizes) do not fingerprint known content.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from pyfastcdc import FastCDC

Piece = bytes | int  # a chunk's bytes, or the length of a spliced block
Splice = Callable[[int, int], int]  # (cut point in the pending bytes, bytes after) -> length


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """FastCDC parameters in pyfastcdc's terms (see docs/STORE.md for the measurement)."""

    avg_size: int = 48 << 10
    min_size: int = 16 << 10
    max_size: int = 256 << 10
    normalized: int = 1
    seed: int = 0

    @classmethod
    def from_config(cls, volume: Mapping[str, object]) -> ChunkParams:
        """Read the `chunker` sub-dict of a store's `config.volume` (defaults if absent)."""
        raw = volume.get("chunker")
        if not isinstance(raw, Mapping):
            return cls()
        fields = {name: int(raw[name]) for name in cls.__slots__ if name in raw}  # type: ignore[call-overload]
        return cls(**fields)

    @classmethod
    def for_average(cls, size: int) -> ChunkParams:
        """Parameters whose mean chunk length is about `size` (min = size/4, max = 4x)."""
        min_size = max(64, size // 4)
        return cls(avg_size=size - min_size, min_size=min_size, max_size=size * 4)

    def with_secret_seed(self, id_key: bytes | None) -> ChunkParams:
        """Return these parameters with a gear seed derived from `id_key` (if any)."""
        if id_key is None:
            return self
        seed = int.from_bytes(hmac.digest(id_key, b"rsyncd-py chunker seed", hashlib.sha256)[:7])
        return ChunkParams(self.avg_size, self.min_size, self.max_size, self.normalized, seed)

    def to_config(self) -> dict[str, int]:
        """The `chunker` sub-dict for `config.volume` (the seed is never stored)."""
        values = asdict(self)
        values.pop("seed")
        return values


class StreamChunker:
    """Cuts a pushed byte stream into content-defined chunks (see the module docstring).

    Not thread-safe: one chunker per file being written.
    """

    def __init__(self, params: ChunkParams, *, batch: int = 1 << 20) -> None:
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalized,  # type: ignore[arg-type]
            seed=params.seed,
        )
        self._max = params.max_size
        self._batch = max(batch, 2 * params.max_size)
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as chunks."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add `data`; return the chunks that are now final (possibly none)."""
        self._buf += data
        if len(self._buf) < self._batch:
            return []
        return self._cut(final=False)

    def finish(self) -> list[bytes]:
        """End the stream (or a run of data before a hole): return all remaining chunks."""
        return self._cut(final=True) if self._buf else []

    def feed_spliced(self, data: bytes | bytearray | memoryview, splice: Splice) -> list[Piece]:
        """`feed`, asking `splice` at each cut point for a known block to skip.

        `splice(position, available)` gets the cut point's position in the pending
        bytes and how many bytes follow it, and returns the length of the block there
        (at most `available`) or 0. Pieces are chunk copies (bytes) or skipped lengths.
        """
        self._buf += data
        if len(self._buf) < self._batch:
            return []
        return self._cut_spliced(final=False, splice=splice)

    def finish_spliced(self, splice: Splice) -> list[Piece]:
        """`finish` with splicing (see `feed_spliced`)."""
        return self._cut_spliced(final=True, splice=splice) if self._buf else []

    def _cut(self, *, final: bool) -> list[bytes]:
        view = memoryview(self._buf)
        chunks, consumed = self._final_chunks(view, final)  # its chunk views die with it
        view.release()  # no view of the buffer may remain when it is resized
        del self._buf[:consumed]
        return chunks

    def _cut_spliced(self, *, final: bool, splice: Splice) -> list[Piece]:
        view = memoryview(self._buf)
        pieces, consumed = self._spliced_pieces(view, final, splice)
        view.release()
        del self._buf[:consumed]
        return pieces

    def _spliced_pieces(
        self, view: memoryview, final: bool, splice: Splice
    ) -> tuple[list[Piece], int]:
        """The final pieces in `view` (spliced blocks, chunks cut one at a time)."""
        pieces: list[Piece] = []
        position, size = 0, len(view)
        while position < size:
            skipped = splice(position, size - position)
            if skipped:
                pieces.append(skipped)
                position += skipped
                continue
            chunk = next(iter(self._cdc.cut_buf(view[position:])))
            end = position + chunk.length
            if not final and end == size and chunk.length < self._max:
                break  # the tail may still grow: carry it over
            pieces.append(bytes(chunk.data))
            position = end
        return pieces, position

    def _final_chunks(self, view: memoryview, final: bool) -> tuple[list[bytes], int]:
        """Copies of the final chunks in `view` and the number of bytes they cover."""
        chunks: list[bytes] = []
        consumed = 0
        for chunk in self._cdc.cut_buf(view):
            end = chunk.offset + chunk.length
            if not final and end == len(view) and chunk.length < self._max:
                break  # the tail may still grow: carry it over
            chunks.append(bytes(chunk.data))
            consumed = end
        return chunks, consumed
