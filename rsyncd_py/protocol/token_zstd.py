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

import zstandard

from .errors import ExitCode, RemoteProtocolError
from .token_framing import FrameDecoder, RunEncoder, chunk_payloads

__all__ = ["ZstdTokenDecoder", "ZstdTokenEncoder"]


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

    A DEFLATED_DATA payload is decompressed whole (python-zstandard has no output
    limit), so one frame's output is bounded only by zstd's own ratio.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stream = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, payload: bytes) -> bytes:
        try:
            return self._stream.decompress(payload)
        except zstandard.ZstdError as e:
            raise RemoteProtocolError(f"ZSTD decomp returned {e}", ExitCode.RERR_STREAMIO) from None
