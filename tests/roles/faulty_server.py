"""A --rsync-path for tests: rsyncd-py's session on a LocalProvider with injected faults.

    python -m tests.roles.faulty_server --root DIR --corrupt-opens 2,4 --server ARGS...

Every path counts how often it is opened for reading. The generator opens a basis to
sum it and the receiver opens it again to copy matched blocks (then the same twice more
for a redo), so corrupting the 2nd open makes the first reconstruction fail its
whole-file checksum, and corrupting the 2nd and 4th makes the redo fail too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys

from rsyncd_py.fs.local import LocalFileReader, LocalProvider
from rsyncd_py.session import run_server
from rsyncd_py.transports.stdio import StdioStream, claim_stdio


class CorruptReader:
    """A FileReader whose random reads come back with their first byte flipped."""

    def __init__(self, inner: LocalFileReader) -> None:
        self.inner = inner
        self.size = inner.size

    async def read(self, offset: int, length: int) -> bytes:
        data = await self.inner.read(offset, length)
        return bytes([data[0] ^ 0xFF]) + data[1:] if data else data

    def stream(self, chunk_size: int = 1 << 20):  # type: ignore[no-untyped-def]
        return self.inner.stream(chunk_size)

    async def close(self) -> None:
        await self.inner.close()


class FaultyProvider:
    def __init__(self, root: bytes, corrupt_opens: set[int]) -> None:
        self.inner = LocalProvider(root)
        self.corrupt_opens = corrupt_opens
        self.opens: collections.Counter[bytes] = collections.Counter()

    async def open_session(self, *, writable: bool, user: str | None = None):  # type: ignore[no-untyped-def]
        fs = await self.inner.open_session(writable=writable, user=user)
        plain_open = fs.open_read

        async def open_read(path: bytes):  # type: ignore[no-untyped-def]
            self.opens[path] += 1
            reader = await plain_open(path)
            return CorruptReader(reader) if self.opens[path] in self.corrupt_opens else reader

        fs.open_read = open_read  # type: ignore[method-assign]
        return fs

    async def aclose(self) -> None:
        await self.inner.aclose()


async def main(argv: list[str]) -> int:
    split = argv.index("--server")
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--corrupt-opens", default="")
    args = parser.parse_args(argv[:split])
    opens = {int(n) for n in args.corrupt_opens.split(",") if n}
    fds = claim_stdio()
    stream = StdioStream(fds)
    provider = FaultyProvider(os.fsencode(args.root), opens)
    try:
        return await run_server(stream, argv[split:], provider)
    finally:
        await stream.close()
        await stream.aclose_input()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
