"""An in-process `SshServer` with a stand-in session, for transport tests with real ssh.

The server runs on its own event loop in a background thread; tests drive it with the
real OpenSSH client (`run_ssh`). The stand-in session replaces `run_server` and does
what its last argument says, so one server covers every transport behaviour:

    echo          copy stdin to stdout until EOF, then exit 0
    sink          count stdin until EOF, print "<bytes> <sha256>" and exit 0
    slowsink      like sink but reads slowly, recording the stream's largest backlog
    flood         write zeros until stopped, closing the stream on the way out
    hold          wait for EOF (or forever), exit 0 -- keeps a session slot busy
    exit:N        write "bye" to stderr, exit N
    crash         raise an exception (a bug in the session)
    fs            open a file system from the provider and print whether it is writable
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rsyncd_py.fs.base import FsProvider
from rsyncd_py.transports.ssh import SshServer, SshSettings
from rsyncd_py.transports.stream import ByteStream
from tests.helpers.ssh_keys import SshKeys, run_ssh


@dataclass
class StandInSession:
    """Records what the transport handed over, and behaves as described above."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    max_buffered: int = 0  # the largest receive backlog "slowsink" saw

    async def __call__(
        self,
        stream: ByteStream,
        argv: Sequence[str],
        provider: FsProvider,
        *,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> int:
        self.calls.append(tuple(argv))
        self.started.set()
        action = argv[-1]
        if action == "echo":
            while data := await stream.read(1 << 16):
                stream.write(data)
                await stream.drain()
            return 0
        if action == "sink":
            digest, total = hashlib.sha256(), 0
            while data := await stream.read(1 << 20):
                digest.update(data)
                total += len(data)
            stream.write(f"{total} {digest.hexdigest()}\n".encode())
            return 0
        if action == "slowsink":  # a consumer slower than the network
            total = 0
            while data := await stream.read(1 << 16):
                total += len(data)
                self.max_buffered = max(self.max_buffered, getattr(stream, "buffered", 0))
                await asyncio.sleep(0.0005)
            stream.write(f"{total}\n".encode())
            return 0
        if action == "flood":  # write until stopped; clean up like run_server does
            try:
                while True:
                    stream.write(bytes(1 << 16))
                    await stream.drain()
            finally:
                await stream.close()
        if action == "hold":
            while await stream.read(1 << 16):
                pass
            return 0
        if action.startswith("exit:"):
            stream.write_stderr(b"bye\n")
            return int(action.split(":", 1)[1])
        if action == "crash":
            raise RuntimeError("stand-in crash")
        if action == "fs":
            fs = await provider.open_session(writable=True)
            stream.write(f"writable={not fs.read_only}\n".encode())
            await fs.close(True)
            return 0
        stream.write_stderr(f"stand-in: unknown action {action!r}\n".encode())
        return 1


class FakeFileSystem:
    def __init__(self, read_only: bool) -> None:
        self.read_only = read_only

    async def close(self, success: bool) -> None:
        return None


class FakeProvider:
    """Hands out file systems that only know whether they are writable."""

    def __init__(self) -> None:
        self.opened: list[tuple[bool, str | None]] = []
        self.closed = False

    async def open_session(self, *, writable: bool, user: str | None = None) -> Any:
        self.opened.append((writable, user))
        return FakeFileSystem(read_only=not writable)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class InProcessServer:
    server: SshServer
    loop: asyncio.AbstractEventLoop
    keys: SshKeys
    session: StandInSession
    provider: FakeProvider

    @property
    def port(self) -> int:
        return self.server.port

    def ssh(self, command: Sequence[str] | str, **kwargs: Any) -> Any:
        key = kwargs.pop("key", self.keys.client)
        return run_ssh(self.port, key, command, **kwargs)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return self.call_soon(coro).result(timeout)

    def call_soon(self, coro: Any) -> concurrent.futures.Future[Any]:
        """Start a coroutine on the server's loop; return its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def start_in_process(keys: SshKeys, **settings: Any) -> tuple[InProcessServer, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    session = StandInSession()
    provider = FakeProvider()
    config = SshSettings(
        host_key=host_key, authorized_keys=keys.authorized_keys, port=0, **settings
    )
    server = SshServer(config, provider, runner=session)
    handle = InProcessServer(server, loop, keys, session, provider)
    handle.call(server.start())
    return handle, thread


def stop_in_process(handle: InProcessServer, thread: threading.Thread) -> None:
    handle.call(handle.server.shutdown(grace=5))
    handle.loop.call_soon_threadsafe(handle.loop.stop)
    thread.join(10)
    handle.loop.close()


@pytest.fixture
def ssh_server(ssh_keys: SshKeys) -> Iterator[InProcessServer]:
    handle, thread = start_in_process(ssh_keys)
    yield handle
    stop_in_process(handle, thread)


@pytest.fixture
def ssh_server_factory(ssh_keys: SshKeys) -> Iterator[Any]:
    started: list[tuple[InProcessServer, threading.Thread]] = []

    def factory(**settings: Any) -> InProcessServer:
        started.append(start_in_process(ssh_keys, **settings))
        return started[-1][0]

    yield factory
    for handle, thread in started:
        stop_in_process(handle, thread)


def rsync_command(*args: str) -> str:
    """A command string as an rsync client would send it."""
    return " ".join(("rsync", "--server", *args))


__all__ = ["InProcessServer", "Path", "rsync_command"]
