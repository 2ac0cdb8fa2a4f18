"""The SSH transport: an asyncssh server that runs one rsync session per exec request.

Theory of operation. `SshServer` listens; every TCP connection gets a `_Connection`
(asyncssh's `SSHServer` for it) and every session channel on it a `_RsyncSession`
(asyncssh's low-level `SSHServerSession`), whose `ChannelStream` is the `ByteStream`
handed to the session runner (`rsyncd_py.session.run_server`). The server is locked
down: nothing runs but rsync server sessions.

    auth        public key only; the authorized_keys file is re-read for every
                connection, so key changes need no restart. No passwords, no
                keyboard-interactive, no host-based, GSS or X.509 auth.
    channels    session channels only (TCP/unix forwarding, tun/tap are refused by
                asyncssh's defaults); no PTY, X11 or agent forwarding; no subsystems
                (so no SFTP or SCP).
    requests    `exec` with an rsync server command (`command.parse_exec_command`);
                anything else -- a shell request, `ls`, `rsync --server ...; rm -rf /`
                -- gets one line on stderr and exit status 1. Nothing is ever handed to
                a shell. `rsync --server --daemon` (host::module) is refused for now.
    key options `rsyncd-readonly` in authorized_keys makes that key pull-only: pushes
                are refused up front, and its sessions get a read-only file system.
    limits      login timeout, keepalives, at most `max_sessions` concurrent sessions
                (extra session channels are refused with a message ssh prints), at
                most `max_startups` connections authenticating at once (more are
                dropped, like sshd's MaxStartups).

Session lifecycle: slot taken in `session_requested` -> command vetted in
`exec_requested` -> `session_started` starts the task that runs the rsync session ->
stream closed (EOF after all data) -> exit status = the session's rsync exit code ->
slot released. `shutdown(grace)` stops listening, refuses new sessions, waits up to
`grace` seconds for running ones, cancels the rest (they exit with RERR_SIGNAL), then
closes every connection. The provider is the caller's to close afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from rsyncd_py.fs.base import FileSystem, FsProvider
from rsyncd_py.protocol.errors import ExitCode
from rsyncd_py.transports.command import CommandRejected, ServerCommand, parse_exec_command
from rsyncd_py.transports.ssh_stream import ChannelStream
from rsyncd_py.transports.stream import ByteStream

__all__ = [
    "DEFAULT_CIPHERS",
    "SessionRunner",
    "SshServer",
    "SshSettings",
    "load_or_create_host_key",
]

# The rsync exit codes the transport itself reports:
#   RERR_SYNTAX       a refused command, like rsync refusing an unknown option
#   RERR_STARTCLIENT  the server is shutting down and cannot start the session
#   RERR_CRASHED      the session runner raised (a bug; run_server itself never does)
#   RERR_SIGNAL       the server shut down under a running session

REFUSED_COMMAND = b"rsyncd-py: only rsync server commands are allowed\n"
REFUSED_DAEMON = (
    b"rsyncd-py: rsync daemon mode (host::module) is not supported yet; "
    b"use host:path with a single colon\n"
)
REFUSED_PUSH = b"rsyncd-py: ERROR: this key is read-only: it may pull but not push\n"
REFUSED_DRAINING = b"rsyncd-py: server is shutting down, try again later\n"
READ_ONLY_KEY_OPTION = "rsyncd-readonly"
CLOSE_TIMEOUT = 10.0  # seconds a client gets to acknowledge the end of a session
FORWARDING_REFUSED = "rsyncd-py: forwarding is not allowed"

# AES-GCM costs asyncssh about half the CPU of chacha20-poly1305 (perf-anchors section 2).
# SSH picks the first cipher on the *client's* list that the server also offers, and
# OpenSSH clients list chacha20 first, so preferring GCM means offering only GCM. Every
# OpenSSH since 6.2 offers it; `--ciphers` can add chacha20 for clients that do not.
DEFAULT_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class SessionRunner(Protocol):
    """The shape of `rsyncd_py.session.run_server`."""

    def __call__(
        self,
        stream: ByteStream,
        argv: Sequence[str],
        provider: FsProvider,
        *,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class SshSettings:
    """How the SSH server listens and whom it lets in."""

    host_key: asyncssh.SSHKey
    authorized_keys: Path
    host: str = "127.0.0.1"
    port: int = 2222
    max_sessions: int = 16
    max_startups: int = 32  # connections allowed to be authenticating at once
    login_timeout: float = 30.0
    keepalive_interval: float = 30.0
    keepalive_count_max: int = 4
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS


def load_or_create_host_key(path: Path) -> tuple[asyncssh.SSHKey, bool]:
    """Return the host key at `path`, generating an ed25519 key there (0600) if missing.

    The second value says whether the key was created. The public half is written next
    to it as ``<path>.pub`` for operators' known_hosts files.
    """
    try:
        return asyncssh.read_private_key(path), False
    except FileNotFoundError:
        pass
    key = asyncssh.generate_private_key("ssh-ed25519", comment="rsyncd-py host key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    Path(f"{path}.pub").write_bytes(key.export_public_key())
    return key, True


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the session id, user and peer address."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra['session']} {extra['user']}@{extra['peer']}] {msg}", kwargs


class SshServer:
    """An rsync-over-SSH server on one listening address (see the module docstring)."""

    def __init__(
        self,
        settings: SshSettings,
        provider: FsProvider,
        *,
        runner: SessionRunner | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.log = log or logging.getLogger("rsyncd_py.ssh")
        self._runner = runner
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[_Connection] = set()
        self._sessions: set[_RsyncSession] = set()
        self._draining = False
        self._conn_ids = itertools.count(1)

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._acceptor is not None, "server not started"
        return self._acceptor.get_port()

    @property
    def draining(self) -> bool:
        """Whether `shutdown` has begun (new sessions are refused)."""
        return self._draining

    @property
    def active_sessions(self) -> int:
        """How many session channels hold a slot right now."""
        return len(self._sessions)

    async def start(self) -> None:
        """Start listening."""
        s = self.settings
        self._acceptor = await asyncssh.listen(
            s.host,
            s.port,
            server_factory=self._new_connection,
            server_host_keys=[s.host_key],
            encoding=None,
            allow_pty=False,
            line_editor=False,
            x11_forwarding=False,
            agent_forwarding=False,
            public_key_auth=True,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            x509_trusted_certs=None,
            encryption_algs=list(s.ciphers),
            login_timeout=s.login_timeout,
            keepalive_interval=s.keepalive_interval,
            keepalive_count_max=s.keepalive_count_max,
        )

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let sessions finish for up to `grace` s, then end the rest."""
        self._draining = True
        if self._acceptor is not None:
            self._acceptor.close()
        tasks = [s.task for s in self._sessions if s.task is not None]
        if tasks:
            self.log.info("waiting up to %gs for %d running session(s)", grace, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                self.log.warning("ending %d session(s) still running", len(pending))
                self.abort_sessions()
                await asyncio.gather(*pending, return_exceptions=True)
        for conn in list(self._connections):
            conn.close()
        if self._acceptor is not None:
            await self._acceptor.wait_closed()

    def abort_sessions(self) -> None:
        """End every running session now (each exits with RERR_SIGNAL)."""
        for session in list(self._sessions):
            if session.task is not None:
                session.task.cancel()

    async def run_session(
        self, stream: ChannelStream, command: ServerCommand, provider: FsProvider, log: SessionLog
    ) -> int:
        """Run one rsync session with the configured runner (run_server by default)."""
        runner = self._runner
        if runner is None:
            from rsyncd_py.session import run_server

            runner = run_server
        return await runner(stream, command.argv, provider, log=log)

    def _new_connection(self) -> _Connection:
        return _Connection(self, next(self._conn_ids))

    def _take_slot(self, session: _RsyncSession) -> None:
        """Count `session` against the limits, or refuse its channel with a message."""
        if self._draining:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "rsyncd-py: server is shutting down"
            )
        if len(self._sessions) >= self.settings.max_sessions:
            self.log.warning(
                "refused a session from %s: %d sessions already running",
                session.conn.peer,
                len(self._sessions),
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"rsyncd-py: too many concurrent sessions (limit {self.settings.max_sessions}),"
                " try again later",
            )
        self._sessions.add(session)

    def _release_slot(self, session: _RsyncSession) -> None:
        self._sessions.discard(session)


class _Connection(asyncssh.SSHServer):
    """One client connection: authentication and the session channels it opens."""

    def __init__(self, server: SshServer, conn_id: int) -> None:
        self.server = server
        self.conn_id = conn_id
        self.peer = "?"
        self.authenticated = False
        self._conn: asyncssh.SSHServerConnection | None = None
        self._session_ids = itertools.count(1)

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        host, port = conn.get_extra_info("peername", ("?", 0))[:2]
        self.peer = f"{host}:{port}"
        server = self.server
        pending = sum(1 for c in server._connections if not c.authenticated)
        if pending >= server.settings.max_startups:
            # sshd's MaxStartups: a flood of unauthenticated connections must not starve
            # real clients of file descriptors and CPU.
            server.log.warning(
                "c%d: %s dropped: %d connections are still authenticating",
                self.conn_id,
                self.peer,
                pending,
            )
            conn.abort()
            return
        server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self not in self.server._connections:
            return  # dropped in connection_made; already logged
        self.server._connections.discard(self)
        if not self.authenticated:
            self.server.log.info(
                "c%d: %s left without authenticating%s",
                self.conn_id,
                self.peer,
                f" ({exc})" if exc else "",
            )

    def begin_auth(self, username: str) -> bool:
        """Load the authorized keys afresh for this connection (always require auth)."""
        assert self._conn is not None
        path = self.server.settings.authorized_keys
        try:
            keys: asyncssh.SSHAuthorizedKeys | None = asyncssh.read_authorized_keys(str(path))
        except (OSError, ValueError) as exc:
            self.server.log.warning("no usable keys in %s (%s): refusing everyone", path, exc)
            keys = None
        self._conn.set_authorized_keys(keys)  # type: ignore[arg-type]
        return True

    def public_key_auth_supported(self) -> bool:
        return True  # offered even when no key is usable, so clients see "(publickey)"

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Called only for keys missing from authorized_keys: log the refusal."""
        self.server.log.info(
            "c%d: %s offered a key that is not authorized: %s %s (user %r)",
            self.conn_id,
            self.peer,
            key.get_algorithm(),
            key.get_fingerprint(),
            username,
        )
        return False

    def auth_completed(self) -> None:
        assert self._conn is not None
        self.authenticated = True
        self.server.log.info(
            "c%d: %s authenticated as %r",
            self.conn_id,
            self.peer,
            self._conn.get_extra_info("username"),
        )

    def connection_requested(self, *args: object) -> bool:
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, FORWARDING_REFUSED
        )

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, FORWARDING_REFUSED
        )

    def server_requested(self, *args: object) -> bool:
        return False  # remote forwarding (-R): a global request has no room for a reason

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def session_requested(self) -> _RsyncSession:
        assert self._conn is not None
        session = _RsyncSession(self, f"c{self.conn_id}.{next(self._session_ids)}")
        self.server._take_slot(session)
        return session

    def key_is_read_only(self) -> bool:
        assert self._conn is not None
        return bool(self._conn.get_key_option(READ_ONLY_KEY_OPTION, False))

    def username(self) -> str:
        assert self._conn is not None
        return str(self._conn.get_extra_info("username"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _RsyncSession(asyncssh.SSHServerSession[bytes]):
    """One session channel: vets the request, runs the rsync session, reports its code."""

    def __init__(self, conn: _Connection, session_id: str) -> None:
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
            self.conn.server._release_slot(self)

    # -- the session ---------------------------------------------------------------------

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
        status = ExitCode.RERR_SYNTAX
        cancelled = False
        try:
            status = await self._dispatch(stream, read_only, log)
        except asyncio.CancelledError:
            cancelled = True
            status = ExitCode.RERR_SIGNAL
            stream.write_stderr(b"rsyncd-py: server shutting down, session aborted\n")
        except Exception:
            log.exception("session crashed")
            status = ExitCode.RERR_CRASHED
            stream.write_stderr(b"rsyncd-py: internal server error (see the server log)\n")
        finally:
            await self._finish(stream, status, flush=not cancelled)
            server._release_slot(self)
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
        provider = _SessionProvider(self.conn.server.provider, self.conn.username(), read_only)
        return await self.conn.server.run_session(stream, command, provider, log)


class _SessionProvider:
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
