"""The connection's send path: what asyncssh does per SSH packet that we can spare it.

Theory of operation. A pull sends a GiB as about 32,768 channel data packets (OpenSSH
clients accept at most 32 KiB per packet), so anything asyncssh does per packet is
paid 32,768 times per GiB. Three things are spared, per connection (`tune_sending`):

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

Copies. asyncssh copies a channel write into its buffer, slices each packet from it,
prefixes the slice, then builds the packet by concatenation five more times on its way
through `SSHConnection.send_packet` (see `_PacketSender`): about nine copies of every
byte sent, and a new AESGCM object per packet. `send_channel_data` cuts the packets
that the send window admits straight from the caller's bytes, and `_PacketSender` seals
channel data on an AES-GCM connection with one join and one AESGCM object per key. The
bytes on the wire are the same. 32,768 packets of 32 KiB, CPU: 0.58 -> 0.12 s.

This reaches into asyncssh internals as asyncssh 2.x has them: the connection's
`send_packet` (which inserts the IGNORE) and its `_send`/`_transport` (where every
packet's bytes go), the channel's send buffer and window, and the connection's
sequence, rekey and GCM state (`GCMCipher._key`, `_iv`, `_update_iv`). If a future
asyncssh changed the first two, the IGNORE filter would simply never drop anything, and
`tune_sending` leaves a connection without `_send` or `_transport` as it is; the sealed
path and `send_channel_data` have no such fallback: tests/ssh/test_send.py, which checks
the bytes the client receives (across re-keys too), is what catches such a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from asyncssh.packet import String, UInt32
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["send_channel_data", "tune_sending"]

_EMPTY = (String(b""),)  # the arguments of asyncssh's countermeasure packet


def tune_sending(conn: asyncssh.SSHServerConnection) -> None:
    """Batch `conn`'s socket writes per loop turn and drop its per-packet IGNOREs.

    Call it from `SSHServer.connection_made`, before any packet is sent.
    """
    transport = getattr(conn, "_transport", None)
    batcher = None
    if transport is not None and callable(getattr(conn, "_send", None)):
        batcher = _WriteBatcher(conn, transport)
        conn._send = batcher.send  # type: ignore[method-assign]
    conn.send_packet = _PacketSender(conn, batcher).send  # type: ignore[method-assign]


def send_channel_data(channel: asyncssh.SSHServerChannel[bytes], data: bytes | memoryview) -> None:
    """`channel.write(data)`, what the send window admits cut into packets from `data` itself.

    asyncssh's `write` copies `data` into its buffer, slices every packet out of that and
    prefixes the slice; here each packet's payload is a view of `data`. The rest (the
    window is full, or data is already queued ahead) goes through `channel.write`.
    """
    chan: Any = channel
    if (
        not isinstance(channel, SSHChannel)  # anything else keeps its own write
        or type(data) is not bytes  # a view into a buffer the caller may reuse: let asyncssh copy
        or chan._send_buf
        or chan._send_state != "open"
        or chan._send_chan is None
        or chan._encoding
    ):
        channel.write(data)
        return
    view = memoryview(data)
    recipient = UInt32(chan._send_chan)
    sent = 0
    while sent < len(view) and chan._send_window:
        size = min(chan._send_window, chan._send_pktsize, len(view) - sent)
        # SSHChannel._flush_send_buf's MSG_CHANNEL_DATA: recipient, then the data as a string
        chan._conn.send_packet(
            MSG_CHANNEL_DATA, recipient, UInt32(size), view[sent : sent + size], handler=channel
        )
        chan._send_window -= size
        sent += size
    if sent < len(view):
        channel.write(view[sent:])  # type: ignore[arg-type]  # asyncssh copies the rest


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


class _PacketSender:
    """`conn.send_packet` without the per-packet IGNOREs, and channel data sealed in one pass.

    asyncssh builds every packet by concatenation (type byte + payload, + padding length
    and padding, header + ciphertext, + tag: five copies of each 32 KiB) and constructs
    a fresh AESGCM object per packet. For channel data on an AES-GCM connection in its
    steady state (keys exchanged, user authenticated, no compression, no rekey due, no
    packet-level debug log), `_seal_data` joins the packet once, encrypts it with one
    AESGCM object kept per key, and hands the header and the ciphertext to the batcher
    as two pieces of one writev. Everything else goes through asyncssh's own path.
    """

    def __init__(self, conn: asyncssh.SSHServerConnection, batcher: _WriteBatcher | None) -> None:
        self._conn = conn
        self._batcher = batcher
        self._stock = conn.send_packet
        self._cipher: GCMCipher | None = None  # the cipher `_aead` was made for
        self._aead: AESGCM | None = None

    def send(self, pkttype: int, *args: Any, handler: Any = None) -> None:
        """Send a packet as asyncssh's `send_packet` would, the same bytes on the wire."""
        if pkttype == MSG_IGNORE and args == _EMPTY and not _cbc(self._conn):
            return
        if pkttype == MSG_CHANNEL_DATA and self._batcher is not None:
            cipher = self._steady_gcm()
            if cipher is not None:
                self._seal_data(cipher, args)
                return
        self._stock(pkttype, *args, handler=handler)

    def _steady_gcm(self) -> GCMCipher | None:
        """The connection's GCM cipher when asyncssh's send_packet would do no more than seal."""
        conn: Any = self._conn
        encryption = conn._send_encryption
        if (
            not isinstance(encryption, GCMEncryption)
            or conn._compressor
            or not (conn._kex_complete and conn._auth_complete)
            or conn._rekey_bytes_sent >= conn._rekey_bytes
            or (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
            or conn.logger._debug_level >= 3  # asyncssh logs each packet's payload then
        ):
            return None
        return encryption._cipher  # type: ignore[no-any-return]

    def _seal_data(self, cipher: GCMCipher, args: tuple[Any, ...]) -> None:
        """Pad, number, encrypt and queue one MSG_CHANNEL_DATA packet (as send_packet does)."""
        conn: Any = self._conn
        if cipher is not self._cipher:  # a new key after each key exchange
            self._cipher, self._aead = cipher, AESGCM(cipher._key)
        assert self._aead is not None and self._batcher is not None
        payload_len = 1 + sum(len(arg) for arg in args)
        padlen = -(conn._send_enchdrlen + payload_len) % conn._send_blocksize
        if padlen < 4:
            padlen += conn._send_blocksize
        packet = b"".join((bytes((padlen, MSG_CHANNEL_DATA)), *args, os.urandom(padlen)))
        header = UInt32(len(packet))
        sealed = self._aead.encrypt(cipher._iv, packet, header)  # ciphertext + 16-byte tag
        cipher._update_iv()
        self._batcher.send(header)
        self._batcher.send(sealed)
        conn._send_seq = (conn._send_seq + 1) & 0xFFFFFFFF
        conn._rekey_bytes_sent += len(packet)


def _cbc(conn: asyncssh.SSHServerConnection) -> bool:
    """Whether the cipher `conn` encrypts with is a CBC-mode one (or not known yet)."""
    cipher = conn.get_extra_info("send_cipher")
    return not isinstance(cipher, str) or cipher.endswith("-cbc")
