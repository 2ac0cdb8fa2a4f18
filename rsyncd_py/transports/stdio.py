"""`ByteStream` over the process's stdin/stdout/stderr (`rsyncd-py --server`, forced commands).

Theory of operation:

- `claim_stdio()` runs first thing in the process. It moves the protocol descriptors
  (0 and 1) to private numbers and points fds 0 and 1 at /dev/null, so nothing else in
  the process (a stray print, a library banner) can ever write into the protocol stream
  or steal its input. Only the `StdioStream` built from the claimed descriptors touches
  them afterwards.
- The descriptors may be pipes (sshd), one socket for both directions (rsync's own
  remote-shell child gets a socketpair end as stdin *and* stdout), a terminal, or a
  file or /dev/null. Pollable ones (pipes, sockets, terminals) are made non-blocking and
  watched with the loop's `add_reader`/`add_writer`; pipe transports are not used
  because a write-pipe transport on a socket reads from it to detect closing and would
  steal the client's data. Files and /dev/null cannot be polled: they are read in a
  worker thread and written synchronously.
- Input: a readable event reads up to 256 KiB into a buffer. Reading stops while more
  than `_READ_HIGH_WATER` bytes wait unread (backpressure on the client) and restarts
  once the session has consumed them. EOF, or a reset connection, reads as b"".
- Output: `write` tries the descriptor at once and queues what it did not take;
  `drain` waits while more than `_WRITE_HIGH_WATER` bytes are queued. A lost client
  (EPIPE, reset) makes `drain` raise `ConnectionError` and later writes are dropped.
- Half-close: `close` flushes and closes the output; on a socket it also shuts down
  the write direction, so the client sees EOF although the same socket stays open for
  reading. Descriptors are put back in blocking mode before they are released, since
  their file descriptions may be shared with the parent (a terminal).
- stderr stays blocking and shared with the rest of the process; `write_diagnostic`
  writes it directly (diagnostics are small).
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import stat
from contextlib import suppress
from dataclasses import dataclass

_READ_SIZE = 256 << 10
_FILE_READ_SIZE = 1 << 20
_READ_HIGH_WATER = 4 << 20
_WRITE_HIGH_WATER = 1 << 20
_CONNECTION_LOST = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


@dataclass(frozen=True, slots=True)
class StdioFds:
    """The protocol descriptors, after `claim_stdio` moved them off 0 and 1."""

    input: int
    output: int
    error: int = 2


def claim_stdio() -> StdioFds:
    """Take fds 0 and 1 for the protocol and leave /dev/null in their place."""
    fds = StdioFds(input=os.dup(0), output=os.dup(1))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return fds


def write_diagnostic(fd: int, data: bytes) -> None:
    """Write all of `data` to the diagnostic descriptor `fd` (stderr or a log).

    The descriptor may share its file description with a non-blocking protocol socket
    (inetd style), so a full buffer is waited out rather than treated as an error; a
    closed stderr is ignored, since there is nobody left to tell.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return


def _pollable(fd: int) -> bool:
    """Return whether an event loop can watch `fd` (a pipe, socket or terminal).

    Regular files and other character devices (/dev/null) cannot be polled.
    """
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class StdioStream:
    """A `ByteStream` over claimed stdio descriptors (see the module docstring)."""

    def __init__(self, fds: StdioFds) -> None:
        self._fds = fds
        self._loop = asyncio.get_running_loop()
        self._in_polled = _pollable(fds.input)
        self._out_polled = _pollable(fds.output)
        for fd, polled in ((fds.input, self._in_polled), (fds.output, self._out_polled)):
            if polled:
                os.set_blocking(fd, False)
        # input side
        self._rbuf = bytearray()
        self._eof = False
        self._reading = False
        self._read_waiter: asyncio.Future[None] | None = None
        # output side
        self._wbuf = bytearray()
        self._writer_armed = False
        self._write_waiter: asyncio.Future[None] | None = None
        self._lost: OSError | None = None
        self._out_closed = False

    # -- input -------------------------------------------------------------------------

    async def read(self, max_bytes: int) -> bytes:
        """Return 1..max_bytes bytes, or b"" once the client closed its side."""
        if not self._in_polled:
            return await asyncio.to_thread(
                os.read, self._fds.input, min(max_bytes, _FILE_READ_SIZE)
            )
        while not self._rbuf and not self._eof:
            self._start_reading()
            self._read_waiter = self._loop.create_future()
            await self._read_waiter
        data = bytes(self._rbuf[:max_bytes])
        del self._rbuf[:max_bytes]
        if len(self._rbuf) < _READ_HIGH_WATER:
            self._start_reading()
        return data

    def _start_reading(self) -> None:
        if not self._reading and not self._eof:
            self._reading = True
            self._loop.add_reader(self._fds.input, self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fds.input)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fds.input, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in _CONNECTION_LOST:
                raise
            data = b""  # a reset reads as EOF: the session reports the lost connection
        if data:
            self._rbuf += data
            if len(self._rbuf) >= _READ_HIGH_WATER:
                self._stop_reading()
        else:
            self._eof = True
            self._stop_reading()
        _wake(self._read_waiter)

    # -- output ------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue `data` for the client (dropped once the client has gone)."""
        if self._out_closed:
            raise ConnectionError("write after close")
        if self._lost is not None:
            return
        if not self._out_polled:
            write_all = memoryview(data)
            while write_all:
                write_all = write_all[os.write(self._fds.output, write_all) :]
            return
        if self._wbuf:
            self._wbuf += data
            return
        try:
            sent = os.write(self._fds.output, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._connection_lost(exc)
            return
        if sent < len(data):
            self._wbuf += memoryview(data)[sent:]
            self._arm_writer()

    def _arm_writer(self) -> None:
        if not self._writer_armed:
            self._writer_armed = True
            self._loop.add_writer(self._fds.output, self._on_writable)

    def _disarm_writer(self) -> None:
        if self._writer_armed:
            self._writer_armed = False
            self._loop.remove_writer(self._fds.output)

    def _on_writable(self) -> None:
        try:
            sent = os.write(self._fds.output, self._wbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._connection_lost(exc)
            return
        del self._wbuf[:sent]
        if not self._wbuf:
            self._disarm_writer()
        if len(self._wbuf) <= _WRITE_HIGH_WATER:
            _wake(self._write_waiter)

    def _connection_lost(self, exc: OSError) -> None:
        if exc.errno not in _CONNECTION_LOST:
            raise exc
        self._lost = exc
        self._wbuf.clear()
        self._disarm_writer()
        _wake(self._write_waiter)

    async def _wait_output(self, limit: int) -> None:
        """Wait until at most `limit` bytes are queued; raise if the client has gone."""
        while len(self._wbuf) > limit and self._lost is None:
            self._write_waiter = self._loop.create_future()
            await self._write_waiter
        if self._lost is not None:
            raise ConnectionError("the client closed the connection") from self._lost

    async def drain(self) -> None:
        """Wait until the queued output is under the high-water mark."""
        await self._wait_output(_WRITE_HIGH_WATER)

    def write_stderr(self, data: bytes) -> None:
        """Write diagnostic text to stderr (see `write_diagnostic`)."""
        write_diagnostic(self._fds.error, data)

    async def close(self) -> None:
        """Flush the output, close it and signal EOF to the client; reading may go on."""
        if self._out_closed:
            return
        self._out_closed = True
        with suppress(ConnectionError):
            await self._wait_output(0)
        self._disarm_writer()
        self._release(self._fds.output, shutdown_write=True)

    async def aclose_input(self) -> None:
        """Stop reading and release the input descriptor (at the end of the process)."""
        self._stop_reading()
        self._release(self._fds.input)

    @staticmethod
    def _release(fd: int, *, shutdown_write: bool = False) -> None:
        """Close `fd`; on request first shut down a socket's write side (the client's EOF)."""
        with suppress(OSError):
            os.set_blocking(fd, True)
        if shutdown_write and stat.S_ISSOCK(os.fstat(fd).st_mode):
            with socket.socket(fileno=os.dup(fd)) as sock, suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        os.close(fd)
