"""The connection's send path: what asyncssh does per SSH packet that we can spare it.

Theory of operation. A pull sends a GiB as about 32,768 channel data packets (OpenSSH
clients accept at most 32 KiB per packet), so anything asyncssh does per packet is
paid 32,768 times per GiB. Two things are spared, per connection (`tune_sending`):

Socket writes. asyncssh hands each encrypted packet to the transport at once, and an
idle socket takes it with a send() of its own: one system call, and on loopback one
pass through the TCP stack and one wake-up of the client, per 32 KiB. `_WriteBatcher`
collects the packets of one event-loop turn (a session's write of 1 MiB is 32 of
them) and gives them to the transport in one `writelines`: one writev, no copy.
Ordering is kept (everything goes through the one batch), and nothing waits beyond
the end of the turn. A pull of 1 GiB over OpenSSH, server CPU, interleaved A/B,
medians of 5: 3.3 -> 2.7 s (another run: 3.0 -> 2.3).

Empty IGNOREs. Once the key exchange is done, asyncssh precedes every
packet it sends with an empty SSH_MSG_IGNORE: the countermeasure RFC 4251 (section
9.3.1) gives for CBC mode, whose next IV is the last ciphertext block and so is known
to an attacker who can choose plaintext. Every other cipher this server can offer
(AES-GCM, chacha20-poly1305, CTR) draws a fresh nonce or counter per packet and has no
use for it, yet each of those packets is one more encryption, one more socket write
and 36 more bytes: 0.15-0.2 of asyncssh's 0.8-0.9 CPU-s per GiB sent
(docs/PERFORMANCE.md). They are dropped unless the negotiated cipher is a CBC one.

This reaches into two asyncssh internals, both stable since its first releases: the
connection's `send_packet` (which inserts the IGNORE) and its `_send`/`_transport`
(where every packet's bytes go). If a future asyncssh changed them, the IGNORE filter
would simply never drop anything, and `tune_sending` leaves a connection without
`_send` or `_transport` as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

__all__ = ["tune_sending"]

_EMPTY = (String(b""),)  # the arguments of asyncssh's countermeasure packet


def tune_sending(conn: asyncssh.SSHServerConnection) -> None:
    """Batch `conn`'s socket writes per loop turn and drop its per-packet IGNOREs.

    Call it from `SSHServer.connection_made`, before any packet is sent.
    """
    _skip_cbc_countermeasure(conn)
    transport = getattr(conn, "_transport", None)
    if transport is not None and callable(getattr(conn, "_send", None)):
        conn._send = _WriteBatcher(conn, transport).send  # type: ignore[method-assign]


class _WriteBatcher:
    """Collects a connection's packets during one loop turn; one `writelines` at its end."""

    def __init__(self, conn: asyncssh.SSHServerConnection, transport: asyncio.Transport) -> None:
        self._conn = conn
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._batch: list[bytes] = []

    def send(self, data: bytes) -> None:
        """Queue `data` (asyncssh's `_send`; dropped, as there, once the connection closed)."""
        if getattr(self._conn, "_transport", None) is None:
            return
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(data)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        # closed under us: asyncssh ignores a failed write the same way
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._transport.writelines(batch)


def _skip_cbc_countermeasure(conn: asyncssh.SSHServerConnection) -> None:
    """Stop `conn` sending an empty SSH_MSG_IGNORE before each packet, unless it uses CBC."""
    send_packet = conn.send_packet

    def send(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY and not _cbc(conn):
            return
        send_packet(pkttype, *args, handler=handler)

    conn.send_packet = send  # type: ignore[method-assign]


def _cbc(conn: asyncssh.SSHServerConnection) -> bool:
    """Whether the cipher `conn` encrypts with is a CBC-mode one (or not known yet)."""
    cipher = conn.get_extra_info("send_cipher")
    return not isinstance(cipher, str) or cipher.endswith("-cbc")
