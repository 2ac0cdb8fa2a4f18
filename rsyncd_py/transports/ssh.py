"""The SSH transport: an asyncssh server that runs one rsync session per exec request.

Theory of operation. `SshServer` listens; every TCP connection gets a
`ClientConnection` (asyncssh's `SSHServer` for it: authentication, limits, what channels
it may open) and every session channel on it an `ssh_session.RsyncSession` (asyncssh's
low-level `SSHServerSession`), whose `ChannelStream` is the `ByteStream` handed to the
session runner (`rsyncd_py.session.run_server`). The server is locked down: nothing runs
but rsync server sessions.

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
closes every connection (which also unblocks a session stuck writing to a client that
stopped reading). The provider is the caller's to close afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from rsyncd_py.fs.base import FsProvider
from rsyncd_py.transports.command import ServerCommand
from rsyncd_py.transports.ssh_send import tune_sending
from rsyncd_py.transports.ssh_session import RsyncSession
from rsyncd_py.transports.stream import ByteStream

__all__ = [
    "DEFAULT_CIPHERS",
    "SessionRunner",
    "SshServer",
    "SshSettings",
    "load_or_create_host_key",
]

READ_ONLY_KEY_OPTION = "rsyncd-readonly"
ABORT_WAIT = 5.0  # seconds a cancelled session gets to unwind before its connection closes
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
        self._connections: set[ClientConnection] = set()
        self._sessions: set[RsyncSession] = set()
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
        pending = {s.task for s in self._sessions if s.task is not None}
        if pending:
            self.log.info("waiting up to %gs for %d running session(s)", grace, len(pending))
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            self.log.warning("ending %d session(s) still running", len(pending))
            self.abort_sessions()
            _, pending = await asyncio.wait(pending, timeout=ABORT_WAIT)
        # Closing the connections also unblocks a session stuck flushing to a client that
        # no longer reads: its stream is lost, so its pending drain fails.
        for conn in list(self._connections):
            conn.close()
        if pending:
            await asyncio.wait(pending, timeout=ABORT_WAIT)
        if self._acceptor is not None:
            await self._acceptor.wait_closed()

    def abort_sessions(self) -> None:
        """End every running session now (each exits with RERR_SIGNAL)."""
        for session in list(self._sessions):
            session.abort()

    async def run_session(
        self,
        stream: ByteStream,
        command: ServerCommand,
        provider: FsProvider,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> int:
        """Run one rsync session with the configured runner (run_server by default)."""
        runner = self._runner
        if runner is None:
            from rsyncd_py.session import run_server

            runner = run_server
        return await runner(stream, command.argv, provider, log=log)

    def _new_connection(self) -> ClientConnection:
        return ClientConnection(self, next(self._conn_ids))

    def take_slot(self, session: RsyncSession) -> None:
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

    def release_slot(self, session: RsyncSession) -> None:
        """`session` no longer counts against the limits."""
        self._sessions.discard(session)


class ClientConnection(asyncssh.SSHServer):
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
        tune_sending(conn)

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

    def session_requested(self) -> RsyncSession:
        assert self._conn is not None
        session = RsyncSession(self, f"c{self.conn_id}.{next(self._session_ids)}")
        self.server.take_slot(session)
        return session

    def key_is_read_only(self) -> bool:
        """Whether the key that authenticated carries the rsyncd-readonly option."""
        assert self._conn is not None
        return bool(self._conn.get_key_option(READ_ONLY_KEY_OPTION, False))

    def username(self) -> str:
        """The user name the client authenticated as."""
        assert self._conn is not None
        return str(self._conn.get_extra_info("username"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
