"""Long SSH transport runs (`make soak`): big transfers and many sessions leak nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from tests.helpers.ssh_keys import ssh_argv, ssh_env
from tests.ssh.conftest import InProcessServer, rsync_command

pytestmark = pytest.mark.soak


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_gib_push_arrives_intact(ssh_server: InProcessServer) -> None:
    digest = hashlib.sha256()
    client = subprocess.Popen(
        [
            *ssh_argv(ssh_server.port, ssh_server.keys.client),
            "127.0.0.1",
            rsync_command(".", "sink"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ssh_env(),
    )
    assert client.stdin is not None
    block = os.urandom(1 << 20)
    for i in range(1024):
        chunk = block[i:] + block[:i]  # every MiB differs
        digest.update(chunk)
        client.stdin.write(chunk)
    client.stdin.close()
    assert client.stdout is not None
    out = client.stdout.read()
    assert client.wait(300) == 0
    assert out.decode().split() == [str(1 << 30), digest.hexdigest()]


def test_many_sessions_leak_no_descriptors_or_slots(ssh_server: InProcessServer) -> None:
    for _ in range(5):  # warm up whatever the loop and asyncssh allocate once
        assert ssh_server.ssh(rsync_command(".", "echo"), input=b"x").returncode == 0
    before = _open_fds()
    for i in range(300):
        action = ("echo", "exit:3", "crash", "sink")[i % 4]
        result = ssh_server.ssh(rsync_command(".", action), input=b"data")
        expected = {"echo": 0, "exit:3": 3, "crash": 15, "sink": 0}[action]
        assert result.returncode == expected, (i, action, result.returncode, result.stderr)
    assert ssh_server.server.active_sessions == 0
    assert _open_fds() <= before + 4
