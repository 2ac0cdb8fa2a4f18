"""In-memory ByteStream pairs for role and Wire tests (trio's memory_stream_pump idea).

`memory_stream_pair()` returns two connected `MemoryStream`s: what one writes, the other
reads. Each direction is a `Pipe` that can *trickle* (deliver at most `max_chunk` bytes
per read, e.g. 1 to split every structure at every byte) and *stall* (hold everything
back until resumed), which is how ordering bugs and deadlocks show up in tests. Pipes
are bounded (`high_water`): `drain()` on the writing side waits while the pipe is full,
like a real transport.
"""

from __future__ import annotations

import asyncio


class Pipe:
    """One direction of an in-memory stream."""

    def __init__(self, *, max_chunk: int | None = None, high_water: int = 1 << 20) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.max_chunk = max_chunk
        self.high_water = high_water
        self._changed = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        """Hold back everything written from now on until `resume()`."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()
        self._changed.set()

    def put(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("write to a closed pipe")
        self.buffer += data
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def get(self, max_bytes: int) -> bytes:
        while True:
            if self._flowing.is_set() and self.buffer:
                n = min(max_bytes, len(self.buffer), self.max_chunk or max_bytes)
                data = bytes(self.buffer[:n])
                del self.buffer[:n]
                self._changed.set()
                return data
            if self.closed and not self.buffer:
                return b""
            self._changed.clear()
            await self._changed.wait()

    async def wait_room(self) -> None:
        while len(self.buffer) > self.high_water and not self.closed:
            self._changed.clear()
            await self._changed.wait()


class MemoryStream:
    """A ByteStream over two Pipes (see rsyncd_py/transports/stream.py)."""

    def __init__(self, incoming: Pipe, outgoing: Pipe) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.stderr = bytearray()

    async def read(self, max_bytes: int) -> bytes:
        return await self.incoming.get(max_bytes)

    def write(self, data: bytes | memoryview) -> None:
        self.outgoing.put(bytes(data))

    async def drain(self) -> None:
        await self.outgoing.wait_room()

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data

    async def close(self) -> None:
        self.outgoing.close()


def memory_stream_pair(
    *, max_chunk: int | None = None, high_water: int = 1 << 20
) -> tuple[MemoryStream, MemoryStream]:
    """Return (a, b): bytes written to a are read from b and vice versa."""
    a_to_b = Pipe(max_chunk=max_chunk, high_water=high_water)
    b_to_a = Pipe(max_chunk=max_chunk, high_water=high_water)
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)
