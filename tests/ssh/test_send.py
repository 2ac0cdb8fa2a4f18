"""The server's send path (ssh_send.py): no empty SSH_MSG_IGNORE per packet unless CBC,
and channel data sealed without asyncssh's copies on AES-GCM.

An asyncssh client (whose packet log names every packet it receives) echoes data
through the in-process server; the data must round-trip intact either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import asyncssh
import pytest

from rsyncd_py.transports import ssh_send
from tests.ssh.conftest import InProcessServer, rsync_command

PAYLOAD = os.urandom(256 << 10)  # 8 or more data packets each way


async def _echo(server: InProcessServer, cipher: str, **options: Any) -> bytes:
    async with asyncssh.connect(
        "127.0.0.1",
        server.port,
        username="rsync",
        client_keys=[str(server.keys.client)],
        known_hosts=None,
        encryption_algs=[cipher],
        **options,
    ) as conn:
        result = await conn.run(rsync_command(".", "echo"), input=PAYLOAD, encoding=None)
    assert result.exit_status == 0
    return bytes(result.stdout)


def _ignores_received(
    server: InProcessServer, cipher: str, caplog: pytest.LogCaptureFixture
) -> int:
    asyncssh.set_debug_level(3)  # every packet in the log
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            assert asyncio.run(_echo(server, cipher)) == PAYLOAD
    finally:
        asyncssh.set_debug_level(1)
    client = threading.get_ident()  # the server logs from its own thread
    return sum(
        record.thread == client and "Received MSG_IGNORE" in record.getMessage()
        for record in caplog.records
    )


def test_no_ignore_packet_precedes_each_packet_with_aes_gcm(
    ssh_server: InProcessServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert _ignores_received(ssh_server, "aes128-gcm@openssh.com", caplog) == 0


def test_cbc_keeps_its_countermeasure(
    ssh_server_factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    server: InProcessServer = ssh_server_factory(ciphers=("aes128-cbc",))  # type: ignore[operator]
    assert _ignores_received(server, "aes128-cbc", caplog) >= 8


def _count_sealed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the packets the server seals itself (`_PacketSender._seal_data`)."""
    sealed = [0]
    seal = ssh_send._PacketSender._seal_data

    def counting(self: Any, *args: Any) -> None:
        sealed[0] += 1
        seal(self, *args)

    monkeypatch.setattr(ssh_send._PacketSender, "_seal_data", counting)
    return sealed


def test_aes_gcm_channel_data_is_sealed_by_the_server_and_arrives_intact(
    ssh_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = _count_sealed(monkeypatch)
    assert asyncio.run(_echo(ssh_server, "aes256-gcm@openssh.com")) == PAYLOAD
    assert sealed[0] >= 8  # 256 KiB back: the data packets took the sealed path


def test_sealed_data_survives_key_exchanges(
    ssh_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client re-keys every 64 KiB: each new key gets its own AESGCM, and packets
    written while a key exchange runs wait in asyncssh's queue, in order."""
    sealed = _count_sealed(monkeypatch)
    echoed = asyncio.run(_echo(ssh_server, "aes128-gcm@openssh.com", rekey_bytes=64 << 10))
    assert echoed == PAYLOAD
    assert sealed[0] >= 1
