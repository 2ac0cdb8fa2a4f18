"""zlib and zlibx token codecs (`token.c:send_deflated_token`, `recv_deflated_token`).

Theory of operation. The stream is raw deflate (window bits -15, memLevel 8), reset at
the start of every file. Literal bytes are deflated; at each token boundary the sender
does a sync flush and strips the trailing empty stored block ``00 00 ff ff``, and the
receiver feeds those four bytes back before the next token (`end_of_data`).

`zlib` (but not `zlibx`) also puts every matched block into the compressor's history,
so later literals can refer back into it. The receiver inserts a matched block as fake
stored blocks (a 5-byte header ``00 len ~len`` plus up to 0xFFFF bytes each, output
discarded: `see_deflate_token`). Python's zlib has no Z_INSERT_ONLY, so the sender does
what rsync built against a system zlib does: deflate the block with a sync flush and
discard the output, for every piece until all input is consumed (RsyncProject/rsync#951
was a C buffer overflow in exactly that fallback). Below protocol 31 rsync does not
advance through a block longer than 0xFFFF while inserting, so the first 64 KiB go in
again for each piece; both directions reproduce that.
"""

from __future__ import annotations

import zlib
from typing import Final

from .errors import ExitCode, RemoteProtocolError
from .token_framing import MAX_FRAME_OUTPUT, FrameDecoder, RunEncoder, chunk_payloads

__all__ = ["DeflateTokenDecoder", "DeflateTokenEncoder"]

SYNC_MARKER: Final = b"\x00\x00\xff\xff"
MAX_STORED: Final = 0xFFFF


def _history_pieces(block: bytes | memoryview, protocol: int) -> list[bytes | memoryview]:
    """The <= 0xFFFF-byte pieces rsync inserts for a matched block (buggy below 31)."""
    view = memoryview(block).cast("B")
    pieces: list[bytes | memoryview] = []
    offset = 0
    remaining = len(view)
    while remaining > 0:
        size = min(remaining, MAX_STORED)
        pieces.append(view[offset : offset + size])
        remaining -= size
        if protocol >= 31:  # older protocols insert the block's start every time
            offset += size
    return pieces


class DeflateTokenEncoder(RunEncoder):
    """The sending side of zlib (history=True) and zlibx (history=False)."""

    def __init__(self, level: int, *, history: bool, protocol: int) -> None:
        super().__init__()
        self._level = level
        self._history = history
        self._protocol = protocol
        self._deflate = self._new_stream()

    def _new_stream(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)

    def reset_file(self) -> None:
        self._deflate = self._new_stream()

    def compress(self, data: bytes | memoryview, *, flush: bool) -> list[bytes]:
        out = self._deflate.compress(data)
        if flush:
            out += self._deflate.flush(zlib.Z_SYNC_FLUSH)
            if not out.endswith(SYNC_MARKER):
                raise AssertionError("deflate sync flush did not end with 00 00 ff ff")
            out = out[: -len(SYNC_MARKER)]
        return chunk_payloads(out)

    def after_match(self, block: bytes | memoryview) -> None:
        if not self._history:
            return
        for piece in _history_pieces(block, self._protocol):
            self._deflate.compress(piece)
            self._deflate.flush(zlib.Z_SYNC_FLUSH)  # output discarded: history only


class DeflateTokenDecoder(FrameDecoder):
    """The receiving side of zlib (history=True) and zlibx (history=False)."""

    def __init__(self, *, history: bool, protocol: int) -> None:
        super().__init__()
        self._history = history
        self._protocol = protocol
        self._inflate = zlib.decompressobj(-15)

    def reset_file(self) -> None:
        self._inflate = zlib.decompressobj(-15)

    def _inflate_bytes(self, data: bytes) -> bytes:
        try:
            out = self._inflate.decompress(data, MAX_FRAME_OUTPUT)
        except zlib.error as e:
            raise RemoteProtocolError(f"inflate returned {e}", ExitCode.RERR_STREAMIO) from None
        if self._inflate.unconsumed_tail or self._inflate.eof:
            raise RemoteProtocolError(
                "inflate: compressed data expands too far or ends early", ExitCode.RERR_STREAMIO
            )
        return out

    def decompress(self, payload: bytes) -> bytes:
        return self._inflate_bytes(payload)

    def end_of_data(self) -> None:
        # the sender stripped the sync flush's empty stored block; it must decode to nothing
        if self._inflate_bytes(SYNC_MARKER):
            raise RemoteProtocolError("decompressor lost sync!", ExitCode.RERR_STREAMIO)

    def see_match(self, block: bytes | memoryview) -> None:
        if not self._history:
            return
        for piece in _history_pieces(block, self._protocol):
            size = len(piece)
            header = bytes((0, size & 0xFF, size >> 8, ~size & 0xFF, (~size >> 8) & 0xFF))
            self._inflate_bytes(header + bytes(piece))
