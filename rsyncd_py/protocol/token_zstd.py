"""The zstd token codec (`token.c:send_zstd_token`, `recv_zstd_token`).

Theory of operation: unlike zlib, zstd keeps ONE compression context and ONE
decompression context for the whole session; they are never reset between files (a
fresh decoder for the second file fails with "Unknown frame descriptor"). The stream is
one endless zstd frame: literal bytes are compressed with ZSTD_e_continue, and at each
token boundary with ZSTD_e_flush (COMPRESSOBJ_FLUSH_BLOCK), so everything sent so far
can be decoded; the output goes out in DEFLATED_DATA frames of at most 16383 bytes.
There is no sync marker and no history insertion.
"""

from __future__ import annotations

from typing import Final

import zstandard

from .errors import ExitCode, RemoteProtocolError
from .token_framing import MAX_FRAME_OUTPUT, FrameDecoder, RunEncoder, chunk_payloads

__all__ = ["ZstdTokenDecoder", "ZstdTokenEncoder"]

# python-zstandard cannot limit one call's output, so a payload goes in in slices: one
# KiB of zstd input makes at most 32 MiB (256 four-byte RLE blocks of 128 KiB)
_SLICE: Final = 1024


class ZstdTokenEncoder(RunEncoder):
    """The sending side: one compressor for the session."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._stream = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes | memoryview, *, flush: bool) -> list[bytes]:
        out = self._stream.compress(data) if len(data) else b""
        if flush:
            out += self._stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return chunk_payloads(out)


class ZstdTokenDecoder(FrameDecoder):
    """The receiving side: one decompressor for the session.

    A payload's output is limited to MAX_FRAME_OUTPUT, checked after each input slice,
    so a hostile frame costs at most that plus one slice's worth of memory.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stream = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, payload: bytes) -> bytes:
        out = bytearray()
        view = memoryview(payload)
        try:
            for offset in range(0, len(view), _SLICE):
                out += self._stream.decompress(view[offset : offset + _SLICE])
                if len(out) > MAX_FRAME_OUTPUT:
                    raise RemoteProtocolError(
                        "ZSTD decomp: compressed data expands too far", ExitCode.RERR_STREAMIO
                    )
        except zstandard.ZstdError as e:
            raise RemoteProtocolError(f"ZSTD decomp returned {e}", ExitCode.RERR_STREAMIO) from None
        return bytes(out)
