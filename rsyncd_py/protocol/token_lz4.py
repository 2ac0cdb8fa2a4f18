"""The lz4 token codec (`token.c:send_compressed_token`, `recv_compressed_token`).

Each DEFLATED_DATA payload is an independent raw LZ4 block (LZ4_compress_default, no
size prefix) of at most 16383 input bytes; when a block's output would not fit the
14-bit length the sender halves the input and tries again. There is no stream state,
so nothing is reset between files and nothing is flushed at token boundaries.
"""

from __future__ import annotations

from typing import Final

import lz4.block

from .errors import ExitCode, RemoteProtocolError
from .token_framing import MAX_DATA_COUNT, FrameDecoder, RunEncoder
from .tokens import CHUNK_SIZE

__all__ = ["Lz4TokenDecoder", "Lz4TokenEncoder"]

# token.c: MAX(LZ4_compressBound(CHUNK_SIZE), MAX_DATA_COUNT + 2), the receive buffer
MAX_BLOCK_OUTPUT: Final = max(CHUNK_SIZE + CHUNK_SIZE // 255 + 16, MAX_DATA_COUNT + 2)


class Lz4TokenEncoder(RunEncoder):
    """The sending side."""

    def compress(self, data: bytes | memoryview, *, flush: bool) -> list[bytes]:
        del flush  # every block stands alone
        view = memoryview(data).cast("B")
        payloads: list[bytes] = []
        offset = 0
        while offset < len(view):
            size = min(len(view) - offset, MAX_DATA_COUNT)
            while True:
                block = lz4.block.compress(view[offset : offset + size], store_size=False)
                if len(block) <= MAX_DATA_COUNT:
                    break
                size //= 2
            payloads.append(block)
            offset += size
        return payloads


class Lz4TokenDecoder(FrameDecoder):
    """The receiving side."""

    def decompress(self, payload: bytes) -> bytes:
        try:
            return lz4.block.decompress(payload, uncompressed_size=MAX_BLOCK_OUTPUT)
        except lz4.block.LZ4BlockError as e:
            raise RemoteProtocolError(f"uncompress failed: {e}", ExitCode.RERR_STREAMIO) from None
