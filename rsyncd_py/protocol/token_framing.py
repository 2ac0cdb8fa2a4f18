"""The framing every compressed token stream shares (`token.c`, flag bytes).

Wire format: a sequence of flag-led records.

| flag                     | meaning                                                   |
|--------------------------|-----------------------------------------------------------|
| 0x00 END_FLAG            | end of the file's tokens                                  |
| 0x40 + hi6, lo8          | DEFLATED_DATA: 14-bit length (<= 16383), compressed bytes |
| 0x80 + r                 | TOKEN_REL: block last_run_end + r (r <= 63)               |
| 0xC0 + r, run16 LE       | TOKENRUN_REL: that block and the next run16 blocks        |
| 0x20, int32              | TOKEN_LONG: an absolute block index                       |
| 0x21, int32, run16 LE    | TOKENRUN_LONG                                             |

Consecutive matched blocks are coalesced into runs (at most 65536 blocks), and block
numbers are relative to the end of the previous run when that fits in 6 bits.

Theory of operation. `RunEncoder` is the run and framing half of `send_*_token`: it
remembers the current run (`run_start`..`last_token`) and the end of the previous one
(`last_run_end`); a run is written only when the next token breaks it, so `match` often
returns nothing and `end` flushes. Literal bytes go to the codec's `compress` hook, whose
output is cut into DEFLATED_DATA frames. `last_token` is -1 at the start of a file and -2
after data-only literals, exactly as in rsync.

`FrameDecoder` is the shared half of `recv_*_token`: it reads one whole record at a time
from the ReceiveBuffer (never part of one), hands DEFLATED_DATA payloads to the codec's
`decompress` hook, and replays runs from its own state (`rx_token`, `rx_run`) without
reading. Before the first non-data record after data it calls `end_of_data` (zlib feeds
its sync marker there).
"""

from __future__ import annotations

import struct
from typing import Final

from .buffer import ReceiveBuffer
from .errors import RemoteProtocolError
from .tokens import CHUNK_SIZE, END, Literal, Match, Token

__all__ = ["MAX_DATA_COUNT", "MAX_FRAME_OUTPUT", "FrameDecoder", "RunEncoder"]

END_FLAG: Final = 0x00
TOKEN_LONG: Final = 0x20
TOKENRUN_LONG: Final = 0x21
DEFLATED_DATA: Final = 0x40
TOKEN_REL: Final = 0x80
TOKENRUN_REL: Final = 0xC0
MAX_DATA_COUNT: Final = 16383  # a 14-bit length
MAX_TOKEN_INDEX: Final = 0x7FFFFFFE
# One DEFLATED_DATA frame from a real sender decompresses to a few MiB at most (a zlib
# block of a long run of one byte); more than this is an attack, not data.
MAX_FRAME_OUTPUT: Final = 32 << 20

_INT32 = struct.Struct("<i")


def invalid_token() -> RemoteProtocolError:
    """`token.c:invalid_compressed_token`."""
    return RemoteProtocolError("invalid token number in compressed stream")


class RunEncoder:
    """Run coalescing and DEFLATED_DATA framing; subclasses supply the compressor."""

    def __init__(self) -> None:
        self._last_token = -1
        self._run_start = 0
        self._last_run_end = 0
        self._flush_pending = False

    # --- hooks ---------------------------------------------------------------------------
    def reset_file(self) -> None:
        """Called at the first token of each file (rsync: when last_token is -1)."""

    def compress(self, data: bytes | memoryview, *, flush: bool) -> list[bytes]:
        """Compress `data` (flush at a token boundary); return DEFLATED_DATA payloads."""
        raise NotImplementedError

    def after_match(self, block: bytes | memoryview) -> None:
        """Called after a matched block's token is queued (zlib history insertion)."""

    # --- the encoder API -------------------------------------------------------------------
    def start_file(self) -> None:
        self._last_token = -1

    def literal(self, data: bytes | memoryview) -> bytes:
        # rsync's sender hands the compressor at most CHUNK_SIZE at a time, so no frame
        # stands for more than a few MiB; do the same (receivers may limit frame output)
        view = memoryview(data).cast("B")
        return b"".join(
            self._send(-2, view[offset : offset + CHUNK_SIZE])
            for offset in range(0, len(view), CHUNK_SIZE)
        )

    def match(self, index: int, block: bytes | memoryview) -> bytes:
        if not 0 <= index <= MAX_TOKEN_INDEX:
            raise ValueError(f"block index {index} out of range")
        out = self._send(index, b"")
        self.after_match(block)
        return out

    def end(self) -> bytes:
        return self._send(-1, b"")

    def _send(self, token: int, data: bytes | memoryview) -> bytes:
        """`send_deflated_token` and friends: token -2 is data only, -1 the end."""
        out = bytearray()
        if self._last_token == -1:
            self.reset_file()
            self._last_run_end = 0
            self._run_start = token
            self._flush_pending = False
        elif self._last_token == -2:
            self._run_start = token
        elif (
            len(data)
            or token != self._last_token + 1
            or token >= self._run_start + 65536
        ):
            self._write_run(out)
            self._last_run_end = self._last_token
            self._run_start = token
        self._last_token = token

        if len(data) or self._flush_pending:
            for payload in self.compress(data, flush=token != -2):
                out += bytes((DEFLATED_DATA | (len(payload) >> 8), len(payload) & 0xFF))
                out += payload
            self._flush_pending = token == -2
        if token == -1:
            out.append(END_FLAG)
        return bytes(out)

    def _write_run(self, out: bytearray) -> None:
        relative = self._run_start - self._last_run_end
        extra = self._last_token - self._run_start
        if 0 <= relative <= 63:
            out.append((TOKEN_REL if extra == 0 else TOKENRUN_REL) + relative)
        else:
            out.append(TOKEN_LONG if extra == 0 else TOKENRUN_LONG)
            out += _INT32.pack(self._run_start)
        if extra:
            out += bytes((extra & 0xFF, extra >> 8))


def chunk_payloads(compressed: bytes) -> list[bytes]:
    """Cut a compressor's output into DEFLATED_DATA-sized payloads."""
    return [
        compressed[offset : offset + MAX_DATA_COUNT]
        for offset in range(0, len(compressed), MAX_DATA_COUNT)
    ]


class FrameDecoder:
    """Record reading and run replay; subclasses supply the decompressor."""

    def __init__(self) -> None:
        self._rx_token = 0
        self._rx_run = 0
        self._after_data = False
        self._file_start = True  # rsync's r_init: reset before the file's first record

    # --- hooks ---------------------------------------------------------------------------
    def reset_file(self) -> None:
        """Per-file decompressor reset (zlib); the default keeps the session's state."""

    def decompress(self, payload: bytes) -> bytes:
        """Decompress one DEFLATED_DATA payload; return the output (possibly empty)."""
        raise NotImplementedError

    def end_of_data(self) -> None:
        """Called once before the first non-data record that follows data records."""

    def see_match(self, block: bytes | memoryview) -> None:
        del block  # only zlib keeps matched blocks in its history

    # --- the decoder API -------------------------------------------------------------------
    def start_file(self) -> None:
        self._rx_run = 0
        self._after_data = False
        self._file_start = True

    def next_token(self, buf: ReceiveBuffer) -> Token | None:
        if self._file_start:
            self._file_start = False
            self._rx_token = 0
            self.reset_file()
        while True:
            if self._rx_run:
                return self._next_in_run()
            flag = buf.peek_byte()
            if flag is None:
                return None
            if flag & 0xC0 == DEFLATED_DATA:
                size = buf.peek_byte(1)
                if size is None:
                    return None
                length = ((flag & 0x3F) << 8) | size
                if not buf.have(2 + length):
                    return None
                buf.skip(2)
                payload = buf.take(length)
                assert payload is not None
                self._after_data = True
                output = self.decompress(payload)
                if output:
                    return Literal(output)
                continue
            token = self._read_token_record(flag, buf)
            if token is None:
                return None
            return token

    def _read_token_record(self, flag: int, buf: ReceiveBuffer) -> Token | None:
        """Consume one END or token record (whole or not at all); None if incomplete."""
        if flag == END_FLAG:
            record = b"\0"
        elif flag & TOKEN_REL:
            record = buf.peek(3 if flag & 0x40 else 1)
        elif flag in (TOKEN_LONG, TOKENRUN_LONG):
            record = buf.peek(7 if flag == TOKENRUN_LONG else 5)
        else:
            raise RemoteProtocolError(f"invalid flag byte 0x{flag:02x} in compressed token stream")
        if record is None:
            return None
        if self._after_data:
            self._after_data = False
            self.end_of_data()
        buf.skip(len(record))
        if flag == END_FLAG:
            self._file_start = True
            return END
        if flag & TOKEN_REL:
            increment = flag & 0x3F
            if self._rx_token > MAX_TOKEN_INDEX - increment:
                raise invalid_token()
            self._rx_token += increment
            run_bytes = record[1:]
        else:
            (self._rx_token,) = _INT32.unpack_from(record, 1)
            if not 0 <= self._rx_token <= MAX_TOKEN_INDEX:
                raise invalid_token()
            run_bytes = record[5:]
        if run_bytes:
            run = run_bytes[0] | run_bytes[1] << 8
            if run <= 0 or self._rx_token > MAX_TOKEN_INDEX - run:
                raise invalid_token()
            self._rx_run = run
        return Match(self._rx_token)

    def _next_in_run(self) -> Match:
        self._rx_token += 1
        self._rx_run -= 1
        return Match(self._rx_token)
