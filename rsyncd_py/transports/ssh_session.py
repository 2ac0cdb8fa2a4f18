"""One SSH session channel: vet what the client asks for, run it, report rsync's code.

Theory of operation. asyncssh creates an `RsyncSession` for every session channel a
client opens (after `SshServer` granted it a slot) and calls it back as requests and
data arrive:

    pty, subsystem    refused (no terminals, no SFTP)
    shell             accepted, then answered with the one-line refusal and status 1
    exec COMMAND      vetted by `command.parse_exec_command`; never given to a shell
    session started   `_run` starts as a task and decides:
                        server draining            -> REFUSED_DRAINING, RERR_STARTCLIENT
                        not an rsync command       -> REFUSED_COMMAND, RERR_SYNTAX
                        --daemon                   -> REFUSED_DAEMON, RERR_SYNTAX
                        push with a read-only key  -> REFUSED_PUSH, RERR_SYNTAX
                        otherwise the session runner (run_server) -> its exit code
    data, EOF         forwarded to the `ChannelStream`
    channel lost      the stream ends; a session that never started frees its slot

However `_run` ends -- normally, cancelled by a shutdown (RERR_SIGNAL), or by a bug in
the runner (RERR_CRASHED; the traceback goes to the server log only) -- it flushes the
stream (unless aborting), sends the exit status, waits briefly for the client to close
the channel, frees the slot and logs one "end:" line with the code, bytes and duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import asyncssh

from rsyncd_py.fs.base import FileSystem, FsProvider
from rsyncd_py.protocol.errors import ExitCode
from rsyncd_py.transports.command import CommandRejected, ServerCommand, parse_exec_command
from rsyncd_py.transports.ssh_stream import ChannelStream

if TYPE_CHECKING:
    from rsyncd_py.transports.ssh import ClientConnection

__all__ = ["REFUSED_COMMAND", "RsyncSession", "SessionLog", "SessionProvider"]

REFUSED_COMMAND = b"rsyncd-py: only rsync server commands are allowed\n"
REFUSED_DAEMON = (
    b"rsyncd-py: rsync daemon mode (host::module) is not supported yet; "
    b"use host:path with a single colon\n"
)
REFUSED_PUSH = b"rsyncd-py: ERROR: this key is read-only: it may pull but not push\n"
REFUSED_DRAINING = b"rsyncd-py: server is shutting down, try again later\n"
ABORTED = b"rsyncd-py: server shutting down, session aborted\n"
CRASHED = b"rsyncd-py: internal server error (see the server log)\n"
CLOSE_TIMEOUT = 10.0  # seconds a client gets to acknowledge the end of a session


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the session id, user and peer address."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra['session']} {extra['user']}@{extra['peer']}] {msg}", kwargs


class RsyncSession(asyncssh.SSHServerSession[bytes]):
    """One session channel: vets the request, runs the rsync session, reports its code."""

    def __init__(self, conn: ClientConnection, session_id: str) -> None:
        self.conn = conn
        self.session_id = session_id
        self.task: asyncio.Task[None] | None = None
        self._stream: ChannelStream | None = None
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._command: ServerCommand | None = None
        self._request = "none"  # what the client asked for, for the log

    # -- requests ------------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = chan
        self._stream = ChannelStream(chan)

    def pty_requested(self, *args: object) -> bool:
        return False

    def shell_requested(self) -> bool:
        self._request = "shell"
        return True  # accepted only to answer with the one-line refusal and status 1

    def exec_requested(self, command: str) -> bool:
        self._request = command
        try:
            self._command = parse_exec_command(command)
        except CommandRejected as exc:
            self.conn.server.log.warning(
                "%s: refused command %r: %s", self.session_id, command, exc.reason
            )
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self.conn.server.log.warning("%s: refused subsystem %r", self.session_id, subsystem)
        return False

    def session_started(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    # -- data and flow control -----------------------------------------------------------

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is None and self._stream is not None:
            self._stream.feed_data(data)

    def eof_received(self) -> bool:
        if self._stream is not None:
            self._stream.feed_eof()
        return True  # keep our sending side open: rsync still has things to say

    def pause_writing(self) -> None:
        if self._stream is not None:
            self._stream.pause_writing()

    def resume_writing(self) -> None:
        if self._stream is not None:
            self._stream.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.connection_lost(exc)
        if self.task is None:  # never started: nothing else will free the slot
            self.conn.server.release_slot(self)

    # -- the session ---------------------------------------------------------------------

    def abort(self) -> None:
        """End the running session now: tell the client why, then cancel the task.

        The message goes first because the runner's own clean-up may close the stream
        (send EOF) while it unwinds, after which nothing more can be sent.
        """
        if self.task is not None and not self.task.done():
            if self._stream is not None:
                self._stream.write_stderr(ABORTED)
            self.task.cancel()

    async def _run(self) -> None:
        """Run the accepted command (or refuse it) and report the exit status."""
        assert self._stream is not None and self._channel is not None
        server, stream = self.conn.server, self._stream
        read_only = self.conn.key_is_read_only()
        log = SessionLog(
            server.log,
            {"session": self.session_id, "user": self.conn.username(), "peer": self.conn.peer},
        )
        log.info("start: %r%s", self._request, " (read-only key)" if read_only else "")
        started = time.monotonic()
        status: int = ExitCode.RERR_SYNTAX
        cancelled = False
        try:
            status = await self._dispatch(stream, read_only, log)
        except asyncio.CancelledError:
            cancelled = True
            status = ExitCode.RERR_SIGNAL
        except Exception:
            log.exception("session crashed")
            status = ExitCode.RERR_CRASHED
            stream.write_stderr(CRASHED)
        finally:
            await self._finish(stream, status, flush=not cancelled)
            server.release_slot(self)
            log.info(
                "end: exit %d, %d bytes in, %d bytes out, %.2fs",
                status,
                stream.bytes_in,
                stream.bytes_out,
                time.monotonic() - started,
            )

    async def _finish(self, stream: ChannelStream, status: int, *, flush: bool) -> None:
        """Flush (unless aborting), send the exit status, and wait for the channel to close.

        Waiting for the client's close reply lets a shutdown close connections right after
        the session tasks end without cutting off the exit status.
        """
        assert self._channel is not None
        try:
            if flush:
                await stream.close()
            self._channel.exit(status)
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._channel.wait_closed()
        except (OSError, TimeoutError):
            pass  # the client is gone or unresponsive; there is nobody left to tell

    async def _dispatch(self, stream: ChannelStream, read_only: bool, log: SessionLog) -> int:
        """Return the exit status for this request, running the rsync session if allowed."""
        command = self._command
        if self.conn.server.draining:
            stream.write_stderr(REFUSED_DRAINING)
            return ExitCode.RERR_STARTCLIENT
        if command is None:
            stream.write_stderr(REFUSED_COMMAND)
            return ExitCode.RERR_SYNTAX
        if command.is_daemon:
            stream.write_stderr(REFUSED_DAEMON)
            return ExitCode.RERR_SYNTAX
        if read_only and not command.is_sender:
            stream.write_stderr(REFUSED_PUSH)
            return ExitCode.RERR_SYNTAX
        provider = SessionProvider(self.conn.server.provider, self.conn.username(), read_only)
        return await self.conn.server.run_session(stream, command, provider, log)


class SessionProvider:
    """The server's provider as one session sees it: its user, and read-only if the key is.

    `aclose` does nothing: the provider outlives sessions and the server's owner closes it.
    """

    def __init__(self, inner: FsProvider, user: str, read_only: bool) -> None:
        self._inner = inner
        self._user = user
        self._read_only = read_only

    async def open_session(self, *, writable: bool, user: str | None = None) -> FileSystem:
        return await self._inner.open_session(
            writable=writable and not self._read_only, user=user or self._user
        )

    async def aclose(self) -> None:
        return None
