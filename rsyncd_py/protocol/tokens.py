"""The delta token stream (`token.c`): literal data and matched-block references.

After a file's sum_head the sender transmits the new file as tokens: literal bytes, and
references to blocks of the receiver's basis file, then an end marker and the whole-file
checksum. A decoder turns wire bytes into `Literal`, `Match` and `END` items; an encoder
turns the sender's decisions into wire bytes. Without compression (`simple_send_token`,
`simple_recv_token`) the stream is int32 records: n > 0 is a literal of n bytes, -(i+1)
is block i, 0 is the end. The compressed forms share one framing (token_framing.py) and
differ in the compressor: token_zlib.py (zlib, zlibx), token_zstd.py, token_lz4.py.

Theory of operation for the plain decoder: like `simple_recv_token` it keeps the unread
remainder of the current literal ("residue"), and returns each literal in pieces of at
most CHUNK_SIZE as soon as a whole piece has arrived, so a huge length from the peer
never makes it buffer more than 32 KiB. A record header is consumed only when all four
bytes are present: every `next_token` call either returns an item or returns None having
consumed nothing more.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from .buffer import ReceiveBuffer

__all__ = [
    "CHUNK_SIZE",
    "COMPRESSIONS",
    "END",
    "Literal",
    "Match",
    "Token",
    "TokenDecoder",
    "TokenEncoder",
    "compression_level",
    "new_token_decoder",
    "new_token_encoder",
]

# rsync.h CHUNK_SIZE: the largest literal record senders write (3.4.3/3.4.4 reject more)
CHUNK_SIZE: Final = 32 << 10
# what new_token_decoder/new_token_encoder accept ("none" is no compression)
COMPRESSIONS: Final = ("none", "zlib", "zlibx", "zstd", "lz4")

_INT32 = struct.Struct("<i")


@dataclass(frozen=True, slots=True)
class Literal:
    """Bytes of the new file sent verbatim."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Match:
    """The basis file's block `index` (0-based) belongs here."""

    index: int


class _End:
    """The end-of-file marker; use the `END` singleton."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = _End()

Token = Literal | Match | _End


class TokenDecoder(Protocol):
    """Reads one file's tokens at a time from a ReceiveBuffer."""

    def start_file(self) -> None:
        """Prepare for the next file's tokens (a per-file reset where the format has one)."""

    def next_token(self, buf: ReceiveBuffer) -> Token | None:
        """Return the next item, or None when more bytes are needed.

        Raises RemoteProtocolError on a malformed stream.
        """

    def see_match(self, block: bytes | memoryview) -> None:
        """Tell the decoder the basis bytes of the Match just returned (zlib history)."""


class TokenEncoder(Protocol):
    """Writes one file's tokens at a time; every method returns wire bytes."""

    def start_file(self) -> None:
        """Prepare for the next file's tokens."""

    def literal(self, data: bytes | memoryview) -> bytes:
        """Encode literal bytes (may return b"" and keep compressed output pending)."""

    def match(self, index: int, block: bytes | memoryview) -> bytes:
        """Encode a reference to basis block `index`, whose bytes are `block`."""

    def end(self) -> bytes:
        """Encode the end of the file, flushing anything pending."""


def compression_level(compression: str, level: int | None) -> tuple[str, int | None]:
    """`token.c:init_compression_level`: the codec and level both sides will use.

    `level` is ``--compress-level`` (None when not given). A level equal to the codec's
    "off" value turns compression off: 0 for zlib/zlibx. Out-of-range levels are clamped
    as rsync clamps them. Returns ("none", None) when compression ends up off.
    """
    if compression == "none":
        return "none", None
    if compression in ("zlib", "zlibx"):
        if level == 0:
            return "none", None
        if level is None or level == -1:  # Z_DEFAULT_COMPRESSION
            return compression, 6
        return compression, min(max(level, 1), 9)
    if compression == "zstd":
        import zstandard

        if level is None or level == 0:
            return compression, 3  # ZSTD_CLEVEL_DEFAULT
        low, high = -(1 << 17), zstandard.MAX_COMPRESSION_LEVEL  # ZSTD_minCLevel()
        return compression, min(max(level, low), high)
    if compression == "lz4":
        return compression, 0
    raise ValueError(f"unknown compression: {compression}")


def new_token_decoder(compression: str, *, protocol: int = 32) -> TokenDecoder:
    """Return a decoder for `compression` ("none", "zlib", "zlibx", "zstd", "lz4").

    `protocol` matters for zlib only: below 31 rsync inserts matched blocks longer than
    64 KiB into the history wrongly, and the decoder must do the same.
    """
    if compression == "none":
        return SimpleTokenDecoder()
    if compression in ("zlib", "zlibx"):
        from .token_zlib import DeflateTokenDecoder

        return DeflateTokenDecoder(history=compression == "zlib", protocol=protocol)
    if compression == "zstd":
        from .token_zstd import ZstdTokenDecoder

        return ZstdTokenDecoder()
    if compression == "lz4":
        from .token_lz4 import Lz4TokenDecoder

        return Lz4TokenDecoder()
    raise ValueError(f"unknown compression: {compression}")


def new_token_encoder(
    compression: str, level: int | None = None, *, protocol: int = 32
) -> TokenEncoder:
    """Return an encoder for `compression`; `level` as from `compression_level`."""
    if compression == "none":
        return SimpleTokenEncoder()
    codec, effective = compression_level(compression, level)
    if codec in ("zlib", "zlibx"):
        from .token_zlib import DeflateTokenEncoder

        assert effective is not None
        return DeflateTokenEncoder(effective, history=codec == "zlib", protocol=protocol)
    if codec == "zstd":
        from .token_zstd import ZstdTokenEncoder

        assert effective is not None
        return ZstdTokenEncoder(effective)
    if codec == "lz4":
        from .token_lz4 import Lz4TokenEncoder

        return Lz4TokenEncoder()
    raise ValueError(f"compression level {level} turns {compression} off; use 'none'")


class SimpleTokenDecoder:
    """`token.c:simple_recv_token`: int32 records, literals returned in <= 32 KiB pieces."""

    __slots__ = ("_residue",)

    def __init__(self) -> None:
        self._residue = 0

    def start_file(self) -> None:
        self._residue = 0

    def next_token(self, buf: ReceiveBuffer) -> Token | None:
        if self._residue == 0:
            header = buf.take(4)
            if header is None:
                return None
            (value,) = _INT32.unpack(header)
            if value == 0:
                return END
            if value < 0:
                return Match(-value - 1)
            self._residue = value
        piece = buf.take(min(self._residue, CHUNK_SIZE))
        if piece is None:
            return None
        self._residue -= len(piece)
        return Literal(piece)

    def see_match(self, block: bytes | memoryview) -> None:
        del block  # nothing to remember without compression


class SimpleTokenEncoder:
    """`token.c:simple_send_token`: literals chunked to CHUNK_SIZE, -(i+1) per match."""

    __slots__ = ()

    def start_file(self) -> None:
        pass

    def literal(self, data: bytes | memoryview) -> bytes:
        view = memoryview(data).cast("B")
        parts: list[bytes | memoryview] = []
        for offset in range(0, len(view), CHUNK_SIZE):
            piece = view[offset : offset + CHUNK_SIZE]
            parts += (_INT32.pack(len(piece)), piece)
        return b"".join(parts)

    def match(self, index: int, block: bytes | memoryview) -> bytes:
        del block
        return _INT32.pack(-(index + 1))

    def end(self) -> bytes:
        return _INT32.pack(0)
