"""The connection's send path: what asyncssh does per SSH packet that we can spare it.

Theory of operation. A pull sends a GiB as about 32,768 channel data packets (OpenSSH
clients accept at most 32 KiB per packet), so anything asyncssh does per packet is
paid 32,768 times per GiB. Once the key exchange is done, asyncssh precedes every
packet it sends with an empty SSH_MSG_IGNORE: the countermeasure RFC 4251 (section
9.3.1) gives for CBC mode, whose next IV is the last ciphertext block and so is known
to an attacker who can choose plaintext. Every other cipher this server can offer
(AES-GCM, chacha20-poly1305, CTR) draws a fresh nonce or counter per packet and has no
use for it, yet each of those packets is one more encryption, one more socket write
and 36 more bytes: 0.15-0.2 of asyncssh's 0.8-0.9 CPU-s per GiB sent
(docs/PERFORMANCE.md). `skip_cbc_countermeasure` drops those empty IGNOREs on one
connection unless its negotiated cipher is a CBC one.

This reaches into one asyncssh behaviour (its `send_packet` inserting the IGNORE); if
a future asyncssh stops doing that, the wrapper simply never drops anything.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

__all__ = ["skip_cbc_countermeasure"]

_EMPTY = (String(b""),)  # the arguments of asyncssh's countermeasure packet


def skip_cbc_countermeasure(conn: asyncssh.SSHServerConnection) -> None:
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
