"""The Wire: the only bridge between the sans-IO codec and a ByteStream.

Theory of operation
-------------------
Reading. A reader task owns `stream.read`. It pushes every received byte into the
input pipeline at once, so reads never wait on writes and the peer never stalls on us
while we are busy writing. Until `start_multiplex_in()` the bytes go straight into the
ReceiveBuffer (`_inbuf`); after it they go through a `Demuxer`: MSG_DATA payloads land
in `_inbuf`, other messages are handled on the spot (`_handle_message`). The switch is
exact to the byte: whatever the handshake left unconsumed in `_inbuf` is fed back
through the demuxer. `read(reader)` runs a sans-IO reader function against `_inbuf`
until it returns a value, waiting for the reader task between attempts. Memory stays
bounded: the reader task pauses while `_inbuf` holds more than HIGH_WATER bytes.

Writing. `write()` appends logical data; once `start_multiplex_out()` has been called it
is framed as MSG_DATA (frames of at most FRAME_SIZE bytes). Like rsync's output buffer,
data is sent when a frame fills, when the role calls `flush()` (it must before waiting
for the peer), or at the latest FLUSH_DELAY seconds after it was written; callers await
`drain()` for backpressure. A message (`send_msg`) is written at once, ahead of data
still in the buffer -- rsync gives its message buffer the same priority, and clients
print "deleting" lines and item lines in the order that produces.

Failure. The first failure -- EOF while more data was expected, a broken frame, the
peer's MSG_ERROR_EXIT, --timeout seconds without input -- is stored in `_failure` and
raised by every later `read()`; a Wire in that state never yields data again (h11's
ERROR rule). With --timeout a keep-alive task also sends an empty MSG_DATA frame
whenever our side has been silent for half the timeout.

States of the input side:
  RAW      -- bytes go to `_inbuf` as they are (handshake; protocol < 30 client data)
  MUX      -- bytes go through the demuxer
  EOF      -- the peer closed its side; reads fail once `_inbuf` cannot satisfy them
  FAILED   -- `_failure` is set; reads raise it
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import (
    IOERR_VALID_MASK,
    MSG_DATA,
    MSG_DELETED,
    MSG_ERROR,
    MSG_ERROR_EXIT,
    MSG_ERROR_XFER,
    MSG_INFO,
    MSG_IO_ERROR,
    MSG_IO_TIMEOUT,
    MSG_NO_SEND,
    MSG_NOOP,
    MSG_SUCCESS,
    MSG_WARNING,
)
from rsyncd_py.protocol.errors import (
    ConnectionClosed,
    ExitCode,
    RemoteProtocolError,
    SessionError,
)
from rsyncd_py.protocol.mux import Data, Demuxer, Message, pack_frame, pack_frame_header
from rsyncd_py.transports.stream import ByteStream

T = TypeVar("T")

READ_SIZE = 256 * 1024
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024
FRAME_SIZE = 32 * 1024
FLUSH_DELAY = 5.0  # seconds buffered data may wait for a flush


class Log(enum.IntEnum):
    """rsync's log codes (log.c enum logcode) for text the server reports."""

    ERROR_XFER = MSG_ERROR_XFER  # an error that makes the transfer partial (exit 23)
    INFO = MSG_INFO
    ERROR = MSG_ERROR
    WARNING = MSG_WARNING
    LOG = 6  # server log only, never shown to the client


class PeerExit(SessionError):
    """The peer sent MSG_ERROR_EXIT: it is exiting with `exit_code` (already reported)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("", exit_code)


class Wire:
    """Framed, demultiplexed I/O over one ByteStream (see the module docstring)."""

    def __init__(
        self, stream: ByteStream, *, log: logging.Logger | logging.LoggerAdapter | None = None
    ) -> None:
        self._stream = stream
        self._log = log or logging.getLogger("rsyncd_py.wire")
        self._inbuf = ReceiveBuffer()
        self._demux: Demuxer | None = None
        self._eof = False
        self._failure: SessionError | None = None
        self._data_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._mux_out = False
        self._out = bytearray()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handlers: dict[int, Callable[[bytes], None]] = {}
        self.protocol = 0
        self.msgs2stderr = 2  # log.c: 0 all via messages, 1 all to stderr, 2 errors to stderr
        self.who_am_i = "Receiver"  # log.c who_am_i, for the EOF line ("sender" on a pull)
        self.total_read = 0
        self._counted_from: int | None = None  # total_read when rsync's count would start
        self.total_written = 0
        self.io_error = 0  # MSG_IO_ERROR bits from the peer
        self.got_xfer_error = False  # an ERROR_XFER was reported (exit 23)
        self.io_timeout: float = 0  # --timeout seconds (0: wait forever)
        self._keepalive: asyncio.Task[None] | None = None
        self._last_in = self._last_out = time.monotonic()

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the reader task (idempotent)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def close(self) -> None:
        """Flush everything, close our write side and stop reading."""
        with contextlib.suppress(Exception):
            self._flush()
            await self._stream.drain()
        with contextlib.suppress(Exception):
            await self._stream.close()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keepalive
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def drain_until_eof(self, timeout: float) -> None:
        """io.c noop_io_until_death: discard input until the peer closes (or timeout)."""
        self.start()
        self._room.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            async with asyncio.timeout(timeout):
                while not self._eof and self._reader is not None and not self._reader.done():
                    self._inbuf.take_all()
                    self._room.set()
                    self._data_ready.clear()
                    await self._data_ready.wait()

    # --- reading -----------------------------------------------------------------

    def start_multiplex_in(self) -> None:
        """From now on, incoming bytes are multiplexed frames (io_start_multiplex_in)."""
        if self._demux is not None:
            return
        self._demux = Demuxer()
        pending = self._inbuf.take_all()
        if pending:
            self._ingest(pending)

    def set_timeout(self, seconds: float) -> None:
        """--timeout: fail reads after `seconds` without input; send keep-alives meanwhile.

        io.c check_timeout / maybe_send_keepalive: while our side has nothing to say
        for half the timeout, an empty MSG_DATA frame tells the peer we are alive.
        """
        self.io_timeout = seconds
        if seconds > 0 and self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keepalive_loop())

    async def _keepalive_loop(self) -> None:
        interval = self.io_timeout / 2
        while True:
            await asyncio.sleep(interval)
            if self._mux_out and time.monotonic() - self._last_out >= interval:
                with contextlib.suppress(Exception):
                    if self._out:
                        self._flush()
                    else:
                        self._stream.write(pack_frame(MSG_DATA, b""))
                        self._last_out = time.monotonic()

    def on_message(self, tag: int, handler: Callable[[bytes], None]) -> None:
        """Call `handler(payload)` for each incoming message with `tag`."""
        self._handlers[tag] = handler

    async def read(self, reader: Callable[[ReceiveBuffer], T | None]) -> T:
        """Run the sans-IO `reader` until it returns a value (see buffer.py's rule)."""
        self.start()
        while True:
            if self._failure is not None:
                raise self._failure
            value = reader(self._inbuf)
            if value is not None:
                if not self._room.is_set() and len(self._inbuf) < LOW_WATER:
                    self._room.set()
                return value
            if self._eof:
                self._fail(ConnectionClosed(self.bytes_received, self.who_am_i))
                continue
            self._room.set()  # the reader needs more than we hold: never stall it
            self._data_ready.clear()
            if not self.io_timeout:
                await self._data_ready.wait()
                continue
            try:
                async with asyncio.timeout(self.io_timeout):
                    await self._data_ready.wait()
            except TimeoutError:
                idle = time.monotonic() - self._last_in
                if idle >= self.io_timeout:
                    self._fail(
                        SessionError(
                            f"[receiver] io timeout after {int(idle)} seconds -- exiting",
                            ExitCode.RERR_TIMEOUT,
                        )
                    )

    def start_counting_input(self) -> None:
        """io.c io_start_buffering_in: from here rsync counts what it reads (stats.total_read).

        The handshake before it is read unbuffered and uncounted, so the EOF line's
        "N bytes received so far" leaves it out. Call it while the input is still raw.
        """
        self._counted_from = self.total_read - len(self._inbuf)

    @property
    def bytes_received(self) -> int:
        """Input bytes consumed or buffered since `start_counting_input` (0 before it)."""
        return 0 if self._counted_from is None else self.total_read - self._counted_from

    @property
    def buffered(self) -> int:
        """Bytes received and demultiplexed but not yet consumed."""
        return len(self._inbuf)

    async def _read_loop(self) -> None:
        try:
            while self._failure is None:
                await self._room.wait()
                data = await self._stream.read(READ_SIZE)
                if not data:
                    break
                self.total_read += len(data)
                self._ingest(data)
                if len(self._inbuf) > HIGH_WATER:
                    self._room.clear()
        except asyncio.CancelledError:
            raise
        except SessionError as exc:
            self._fail(exc)
        except Exception as exc:  # a transport failure ends the stream like an EOF
            self._log.debug("read failed: %r", exc)
        finally:
            self._eof = True
            self._data_ready.set()

    def _ingest(self, data: bytes) -> None:
        self._last_in = time.monotonic()
        if self._demux is None:
            self._inbuf.extend(data)
        else:
            for event in self._demux.feed(data):
                if isinstance(event, Data):
                    self._inbuf.extend(event.data)
                else:
                    self._handle_message(event)
        self._data_ready.set()

    def _fail(self, failure: SessionError) -> None:
        if self._failure is None:
            self._failure = failure
        self._data_ready.set()

    def _handle_message(self, message: Message) -> None:
        """io.c read_a_msg, for the messages a client may send a server."""
        tag, payload = message.tag, message.payload
        handler = self._handlers.get(tag)
        if handler is not None:
            handler(payload)
            return
        if tag in (MSG_ERROR_XFER, MSG_INFO, MSG_ERROR, MSG_WARNING):
            self._log.info("peer: %s", payload.decode("utf-8", "backslashreplace").rstrip())
        elif tag == MSG_IO_ERROR:
            self.io_error |= _int_payload(tag, payload) & IOERR_VALID_MASK
        elif tag == MSG_NOOP:
            _expect_len(tag, payload, 0)
        elif tag == MSG_ERROR_EXIT:
            self._peer_exit(payload)
        elif tag in (MSG_NO_SEND, MSG_SUCCESS):
            _int_payload(tag, payload)  # unhandled by this role: validated and ignored
        elif tag in (MSG_DELETED, MSG_IO_TIMEOUT):
            raise RemoteProtocolError(
                f"invalid multi-message {tag}:{len(payload)}", ExitCode.RERR_STREAMIO
            )
        else:
            raise RemoteProtocolError(f"unexpected tag {tag}", ExitCode.RERR_STREAMIO)

    def _peer_exit(self, payload: bytes) -> None:
        if len(payload) == 4:
            code = int.from_bytes(payload, "little", signed=True)
            if self.protocol >= 31:
                # we are a generator/receiver: acknowledge with the code (read_a_msg)
                self.send_msg(MSG_ERROR_EXIT, payload)
        elif not payload:
            code = 0
        else:
            raise RemoteProtocolError(
                f"invalid multi-message {MSG_ERROR_EXIT}:{len(payload)}", ExitCode.RERR_STREAMIO
            )
        self._fail(PeerExit(code))

    # --- writing -----------------------------------------------------------------

    def start_multiplex_out(self) -> None:
        """From now on, our output is multiplexed (io_start_multiplex_out)."""
        self._mux_out = True

    @property
    def multiplexing_out(self) -> bool:
        return self._mux_out

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue logical data (never blocks; await `drain()` for backpressure)."""
        if not data:
            return
        self.total_written += len(data)
        if not self._mux_out:
            self._stream.write(bytes(data))
            return
        if not self._out and len(data) >= FRAME_SIZE:  # frame it where it is: no copy
            view = memoryview(data).cast("B")
            whole = len(view) - len(view) % FRAME_SIZE
            self._send_frames(view[:whole])
            self._out += view[whole:]
        else:
            self._out += data
            if len(self._out) >= FRAME_SIZE:
                self._flush(full_frames_only=True)
        if self._out and self._flush_timer is None:
            # io.c maybe_flush_socket: data never waits more than a few seconds
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(FLUSH_DELAY, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        with contextlib.suppress(Exception):
            self._flush()

    def _flush(self, *, full_frames_only: bool = False) -> None:
        out = self._out
        size = len(out) - len(out) % FRAME_SIZE if full_frames_only else len(out)
        if size:
            with memoryview(out) as view:
                self._send_frames(view[:size])
            del out[:size]
        if not out and self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _send_frames(self, data: memoryview) -> None:
        """Write `data` as MSG_DATA frames of FRAME_SIZE (the last may be shorter).

        All of them in one stream write: an SSH channel then cuts the bytes into packets
        of its own size, instead of each frame's 4-byte header making a packet of its own
        (a 32 KiB frame is 4 bytes more than an OpenSSH client's largest packet).
        """
        parts: list[bytes | memoryview] = []
        for pos in range(0, len(data), FRAME_SIZE):
            piece = data[pos : pos + FRAME_SIZE]
            parts += (pack_frame_header(MSG_DATA, len(piece)), piece)
        self._stream.write(b"".join(parts))
        self._last_out = time.monotonic()

    def write_unframed(self, data: bytes) -> None:
        """Send `data` outside the multiplexing, after everything buffered before it.

        io.c's MPLX_TO_BUFFERED switch: below protocol 31 a --files-from list travels
        unframed. The caller sends nothing else until the peer is done reading it.
        """
        self._flush()
        self.total_written += len(data)
        self._stream.write(data)
        self._last_out = time.monotonic()

    async def drain(self) -> None:
        """Wait until the transport has room (call after writing a lot)."""
        await self._stream.drain()

    async def flush(self) -> None:
        """Send everything buffered now and wait for the transport (io_flush).

        Call it before waiting for the peer: buffered data is otherwise only sent once a
        frame fills (or after FLUSH_DELAY), as rsync's own output buffer behaves.
        """
        self._flush()
        await self._stream.drain()

    def send_msg(self, tag: int, payload: bytes) -> None:
        """Send one out-of-band message now.

        Like rsync's message buffer it goes ahead of data that is still buffered (not
        yet flushed), which is the order a real server's output has.
        """
        self._stream.write(pack_frame(tag, payload))
        self._last_out = time.monotonic()

    # --- reporting (log.c rwrite for a server) ----------------------------------

    def rprintf(self, code: Log, text: str | bytes) -> None:
        """Report `text` (one or more lines, with newline) the way a real server does.

        Errors and warnings go to our stderr (which the remote shell forwards) unless the
        client asked for --no-msgs2stderr; info goes to the client as MSG_INFO. Below
        protocol 30 MSG_ERROR/MSG_WARNING do not exist and are downgraded.
        """
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        self._log.log(
            logging.INFO if code in (Log.INFO, Log.LOG) else logging.WARNING,
            "%s",
            data.decode("utf-8", "backslashreplace").rstrip("\n"),
        )
        if code == Log.LOG:
            return
        if code == Log.ERROR_XFER:
            self.got_xfer_error = True
        to_stderr = code != Log.INFO
        if self._mux_out and self.msgs2stderr != 1 and (self.msgs2stderr != 2 or not to_stderr):
            tag = int(code)
            if self.protocol < 30:
                tag = {MSG_ERROR: MSG_ERROR_XFER, MSG_WARNING: MSG_INFO}.get(tag, tag)
            for start in range(0, len(data), 4096):
                self.send_msg(tag, data[start : start + 4096])
            return
        self._stream.write_stderr(data)


def _expect_len(tag: int, payload: bytes, length: int) -> None:
    if len(payload) != length:
        raise RemoteProtocolError(
            f"invalid multi-message {tag}:{len(payload)}", ExitCode.RERR_STREAMIO
        )


def _int_payload(tag: int, payload: bytes) -> int:
    _expect_len(tag, payload, 4)
    return int.from_bytes(payload, "little", signed=True)
