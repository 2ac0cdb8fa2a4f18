"""The one byte-stream shape every transport hands to the session.

A transport (stdio, SSH, later the TCP daemon) adapts its channel to `ByteStream` and
calls `rsyncd_py.session.run_server(stream, argv, fs_factory)`, which returns the rsync
exit code; the transport then reports that code (process exit status, SSH exit-status).
Transports make no protocol decisions and never look at the bytes.
"""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    """A full-duplex byte stream plus a side channel for error text.

    Contract:
    - `read(n)` returns between 1 and `n` bytes, or `b""` once the peer has closed its
      write side (EOF). It never returns `b""` otherwise.
    - `write(data)` queues bytes in order; it does not block. Callers await `drain()`
      to apply backpressure before queueing more than a few hundred KiB.
    - `write_stderr(data)` sends diagnostic text out of band (stderr of the server
      process, SSH extended data). rsync clients print it verbatim.
    - `close()` flushes and closes the write side; reads may continue until EOF.
    - Reads and writes may be used from different tasks at the same time; a pending
      `read` never waits for a `write` to finish, and vice versa.
    """

    async def read(self, max_bytes: int) -> bytes:
        """Return up to `max_bytes` bytes, or b"" at EOF."""
        ...

    def write(self, data: bytes | memoryview) -> None:
        """Queue `data` for sending."""
        ...

    async def drain(self) -> None:
        """Wait until the queued output is below the transport's high-water mark."""
        ...

    def write_stderr(self, data: bytes) -> None:
        """Send diagnostic text out of band."""
        ...

    async def close(self) -> None:
        """Flush and close the write side."""
        ...
