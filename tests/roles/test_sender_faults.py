"""Pulls from a server whose files fail: the real client must see rsync's outcome.

The module is also the `--rsync-path` of these tests: ``python -m
tests.roles.test_sender_faults --root DIR [--vanish NAME] [--eio NAME] [--short NAME]
--server ARGS...`` runs rsyncd-py's session on a LocalProvider whose `open_read` fails
for chosen names (ENOENT: the file vanished after the list was sent; EIO: it cannot be
read) or whose content stream breaks off with EIO after the first chunk.

Expected, as rsync's sender behaves: a vanished file is a warning, MSG_NO_SEND and exit
24; an unreadable one an error, MSG_NO_SEND and exit 23; a read failure part-way sends
the rest as zeros with a deliberately wrong checksum, so the client retries in the redo
phase, then discards the file ("failed verification") and exits 23. Every other file
arrives intact and the session ends cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from rsyncd_py.fs.base import FileReader, FileSystem, FsError
from rsyncd_py.fs.local import LocalProvider
from tests.helpers.rsync_harness import FAKE_RSH, RSYNC
from tests.helpers.trees import write_file

REPO = Path(__file__).resolve().parents[2]


class BreakingReader:
    """A FileReader whose stream fails with EIO after its first chunk."""

    def __init__(self, inner: FileReader) -> None:
        self.inner = inner
        self.size = inner.size

    async def read(self, offset: int, length: int) -> bytes:
        return await self.inner.read(offset, length)

    async def stream(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async for chunk in self.inner.stream(min(chunk_size, 64 << 10)):
            yield chunk
            raise FsError(errno.EIO, "Input/output error", b"")

    async def close(self) -> None:
        await self.inner.close()


class FaultyProvider:
    """A LocalProvider whose sessions fail reads of the chosen file names."""

    def __init__(self, root: bytes, faults: dict[bytes, str]) -> None:
        self.inner = LocalProvider(root)
        self.faults = faults

    async def open_session(self, *, writable: bool, user: str | None = None) -> FileSystem:
        fs = await self.inner.open_session(writable=writable, user=user)
        plain_open = fs.open_read
        faults = self.faults

        async def open_read(path: bytes) -> FileReader:
            fault = faults.get(path.rpartition(b"/")[2])
            if fault == "vanish":
                raise FsError(errno.ENOENT, "No such file or directory", path)
            if fault == "eio":
                raise FsError(errno.EIO, "Input/output error", path)
            reader = await plain_open(path)
            return BreakingReader(reader) if fault == "short" else reader

        fs.open_read = open_read  # type: ignore[method-assign]
        return fs

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _serve(argv: list[str]) -> int:
    from rsyncd_py.session import run_server
    from rsyncd_py.transports.stdio import StdioStream, claim_stdio

    split = argv.index("--server")
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    for kind in ("vanish", "eio", "short"):
        parser.add_argument(f"--{kind}", action="append", default=[])
    args = parser.parse_args(argv[:split])
    faults = {
        os.fsencode(name): kind
        for kind in ("vanish", "eio", "short")
        for name in getattr(args, kind)
    }
    stream = StdioStream(claim_stdio())
    try:
        return await run_server(
            stream, argv[split:], FaultyProvider(os.fsencode(args.root), faults)
        )
    finally:
        await stream.close()
        await stream.aclose_input()


# -- the tests ---------------------------------------------------------------------------


def _pull(
    tmp_path: Path, *faults: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    served = tmp_path / "served"
    for name in ("good", "gone", "broken", "short"):
        write_file(served / "src" / name, os.urandom(300_000), 1_600_000_000_000_000_000)
    server = (
        f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m "
        f"tests.roles.test_sender_faults --root {shlex.quote(str(served))} {' '.join(faults)}"
    )
    return subprocess.run(
        [
            RSYNC,
            "-e",
            FAKE_RSH,
            f"--rsync-path={server}",
            "-a",
            *extra,
            "lh:src/",
            f"{tmp_path / 'got'}/",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_vanished_file_is_a_warning_and_exit_24(tmp_path: Path) -> None:
    done = _pull(tmp_path, "--vanish gone")
    assert done.returncode == 24, done.stderr
    assert b'file has vanished: "/src/gone"' in done.stderr
    assert (tmp_path / "got" / "good").read_bytes() == (tmp_path / "served/src/good").read_bytes()
    assert not (tmp_path / "got" / "gone").exists()


def test_unreadable_file_is_an_error_and_exit_23(tmp_path: Path) -> None:
    done = _pull(tmp_path, "--eio broken")
    assert done.returncode == 23, done.stderr
    assert b'send_files failed to open "/src/broken": Input/output error (5)' in done.stderr
    assert (tmp_path / "got" / "short").read_bytes() == (tmp_path / "served/src/short").read_bytes()
    assert not (tmp_path / "got" / "broken").exists()


def test_read_failure_part_way_is_discarded_after_the_redo(tmp_path: Path) -> None:
    done = _pull(tmp_path, "--short short", extra=("-v",))
    assert done.returncode == 23, done.stderr
    assert b'read errors mapping "/src/short"' in done.stderr
    assert b"short failed verification -- update discarded." in done.stderr
    assert b"(will try again)" in done.stderr  # the redo phase asked for it once more
    assert not (tmp_path / "got" / "short").exists()
    assert (tmp_path / "got" / "good").read_bytes() == (tmp_path / "served/src/good").read_bytes()


if __name__ == "__main__":
    sys.exit(asyncio.run(_serve(sys.argv[1:])))
