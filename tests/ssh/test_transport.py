"""The SSH transport through the real OpenSSH client, with a stand-in rsync session.

Lockdown (auth, commands, PTY, forwarding, subsystems), per-key read-only, exit status
and stderr, data integrity both ways under flow control, session limits, clients
killed mid-transfer, and graceful shutdown. See conftest.py for the stand-in's actions.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rsyncd_py.transports.ssh_stream import RECV_HIGH
from tests.helpers.ssh_keys import run_ssh, ssh_argv, ssh_env
from tests.ssh.conftest import InProcessServer, rsync_command

REFUSAL = b"rsyncd-py: only rsync server commands are allowed\n"


def wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_session_gets_the_command_argv_and_exit_status(ssh_server: InProcessServer) -> None:
    result = ssh_server.ssh(rsync_command("-logDtpre.iLsfxCIvu", ".", "exit:23"))
    assert result.returncode == 23
    assert result.stderr == b"bye\n"
    assert ssh_server.session.calls == [("--server", "-logDtpre.iLsfxCIvu", ".", "exit:23")]


def test_data_round_trips_under_flow_control(ssh_server: InProcessServer) -> None:
    payload = os.urandom(6 << 20)  # several windows and receive high-water marks
    result = ssh_server.ssh(rsync_command(".", "echo"), input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


def test_large_upload_arrives_intact(ssh_server: InProcessServer) -> None:
    payload = os.urandom(24 << 20)
    result = ssh_server.ssh(rsync_command(".", "sink"), input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == [
        str(len(payload)),
        hashlib.sha256(payload).hexdigest(),
    ]


def test_unauthorised_key_is_refused_and_others_still_served(ssh_server: InProcessServer) -> None:
    denied = ssh_server.ssh(rsync_command(".", "echo"), key=ssh_server.keys.stranger)
    assert denied.returncode == 255
    assert b"Permission denied (publickey)" in denied.stderr
    assert ssh_server.session.calls == []
    allowed = ssh_server.ssh(rsync_command(".", "echo"), input=b"still here")
    assert (allowed.returncode, allowed.stdout) == (0, b"still here")


def test_password_and_keyboard_interactive_are_not_offered(ssh_server: InProcessServer) -> None:
    result = run_ssh(
        ssh_server.port,
        ssh_server.keys.stranger,
        "true",
        options=["-o", "PreferredAuthentications=password,keyboard-interactive"],
    )
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_authorized_keys_are_reread_for_every_connection(ssh_server: InProcessServer) -> None:
    keys = ssh_server.keys
    original = keys.authorized_keys.read_bytes()
    keys.authorized_keys.write_bytes(Path(f"{keys.stranger}.pub").read_bytes())
    try:
        assert ssh_server.ssh(rsync_command(".", "exit:0"), key=keys.stranger).returncode == 0
        refused = ssh_server.ssh(rsync_command(".", "exit:0"))
        assert refused.returncode == 255
    finally:
        keys.authorized_keys.write_bytes(original)
    assert ssh_server.ssh(rsync_command(".", "exit:0")).returncode == 0


@pytest.mark.parametrize(
    "command",
    [
        "ls /",
        "sh -c 'rsync --server . echo'",
        "rsync --server . echo; touch {canary}",
        "rsync --server . echo && touch {canary}",
        "rsync --server . $(touch {canary})",
        "rsync --server . `touch {canary}`",
        "rsync --server . echo | touch {canary}",
        "rsync --server . echo > {canary}",
        "rsyncd-py --root / --server . echo",
        "scp -t /tmp",
    ],
)
def test_other_commands_get_one_line_and_status_1(
    ssh_server: InProcessServer, tmp_path: Path, command: str
) -> None:
    canary = tmp_path / "canary"
    result = ssh_server.ssh(command.format(canary=canary))
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", REFUSAL)
    assert not canary.exists()  # no shell ran
    assert ssh_server.session.calls == []


def test_shell_request_is_refused(ssh_server: InProcessServer) -> None:
    result = subprocess.run(
        [*ssh_argv(ssh_server.port, ssh_server.keys.client, "-T"), "127.0.0.1"],
        input=b"echo hello\n",
        capture_output=True,
        timeout=60,
        env=ssh_env(),
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", REFUSAL)


def test_pty_is_refused(ssh_server: InProcessServer) -> None:
    result = ssh_server.ssh(rsync_command(".", "exit:0"), options=["-tt"])
    assert b"PTY allocation request failed" in result.stderr


def test_daemon_mode_is_refused_cleanly(ssh_server: InProcessServer) -> None:
    result = ssh_server.ssh("rsync --server --daemon .")
    assert result.returncode == 1
    assert b"daemon mode" in result.stderr
    assert ssh_server.session.calls == []


def test_tcp_forwarding_is_refused(ssh_server: InProcessServer) -> None:
    direct = ssh_server.ssh([], options=["-W", f"127.0.0.1:{ssh_server.port}"], log_level="INFO")
    assert direct.returncode == 255
    assert b"administratively prohibited: rsyncd-py: forwarding is not allowed" in direct.stderr
    remote = ssh_server.ssh(
        rsync_command(".", "exit:0"),
        options=["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"],
    )
    assert remote.returncode == 255
    assert b"forwarding failed" in remote.stderr


def test_sftp_subsystem_is_refused(ssh_server: InProcessServer, tmp_path: Path) -> None:
    argv = ssh_argv(ssh_server.port, ssh_server.keys.client)
    sftp_options = [a for a in argv[1:] if a not in ("-p", str(ssh_server.port))]
    result = subprocess.run(
        ["sftp", "-P", str(ssh_server.port), *sftp_options, "-b", "-", "127.0.0.1"],
        input=b"ls\n",
        capture_output=True,
        timeout=60,
        env=ssh_env(),
        check=False,
    )
    assert result.returncode != 0
    assert ssh_server.session.calls == []


def test_read_only_key_may_pull_but_not_push(ssh_server: InProcessServer) -> None:
    key = ssh_server.keys.readonly
    push = ssh_server.ssh(rsync_command(".", "fs"), key=key)
    assert push.returncode == 1
    assert b"read-only" in push.stderr
    pull = ssh_server.ssh(rsync_command("--sender", ".", "fs"), key=key)
    assert (pull.returncode, pull.stdout) == (0, b"writable=False\n")
    normal = ssh_server.ssh(rsync_command(".", "fs"))
    assert (normal.returncode, normal.stdout) == (0, b"writable=True\n")
    assert ssh_server.provider.opened == [(False, getpass.getuser()), (True, getpass.getuser())]


def test_session_crash_is_contained(ssh_server: InProcessServer) -> None:
    crashed = ssh_server.ssh(rsync_command(".", "crash"))
    assert crashed.returncode == 15  # RERR_CRASHED, as run_server reports its own bugs
    assert b"internal server error" in crashed.stderr
    assert b"Traceback" not in crashed.stderr
    assert ssh_server.ssh(rsync_command(".", "exit:0")).returncode == 0


def test_client_killed_mid_transfer_frees_its_session(ssh_server: InProcessServer) -> None:
    client = subprocess.Popen(
        [
            *ssh_argv(ssh_server.port, ssh_server.keys.client),
            "127.0.0.1",
            rsync_command(".", "sink"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ssh_env(),
    )
    assert client.stdin is not None
    assert ssh_server.session.started.wait(30)
    client.stdin.write(os.urandom(4 << 20))
    client.stdin.flush()
    client.kill()
    client.wait()
    wait_for(lambda: ssh_server.server.active_sessions == 0)
    again = ssh_server.ssh(rsync_command(".", "sink"), input=b"abc")
    assert again.returncode == 0
    assert again.stdout.startswith(b"3 ")


def _hold(server: InProcessServer) -> subprocess.Popen[bytes]:
    """Start a session that stays open until its stdin is closed."""
    before = len(server.session.calls)
    process = subprocess.Popen(
        [*ssh_argv(server.port, server.keys.client), "127.0.0.1", rsync_command(".", "hold")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ssh_env(),
    )
    wait_for(lambda: len(server.session.calls) > before)
    return process


def test_concurrent_sessions_and_the_limit(ssh_server_factory: object) -> None:
    server: InProcessServer = ssh_server_factory(max_sessions=2)  # type: ignore[operator]
    first, second = _hold(server), _hold(server)
    refused = server.ssh(rsync_command(".", "exit:0"), log_level="INFO")
    assert refused.returncode == 255
    assert b"too many concurrent sessions (limit 2)" in refused.stderr
    for process in (first, second):
        _, err = process.communicate(b"", timeout=60)
        assert process.returncode == 0, err
    wait_for(lambda: server.server.active_sessions == 0)
    assert server.ssh(rsync_command(".", "exit:0")).returncode == 0


def test_shutdown_waits_for_running_sessions(ssh_server_factory: object) -> None:
    server: InProcessServer = ssh_server_factory()  # type: ignore[operator]
    held = _hold(server)
    stopping = server.call_soon(server.server.shutdown(grace=60))
    wait_for(lambda: not _accepts(server.port))
    assert not stopping.done()
    held.communicate(b"", timeout=60)
    assert held.returncode == 0  # finished normally within the grace period
    stopping.result(60)


def test_shutdown_ends_sessions_after_the_grace_period(ssh_server_factory: object) -> None:
    server: InProcessServer = ssh_server_factory()  # type: ignore[operator]
    held = _hold(server)
    server.call(server.server.shutdown(grace=0.2))
    _, err = held.communicate(timeout=60)
    assert held.returncode == 20
    assert b"server shutting down" in err


def test_login_timeout_drops_silent_connections(ssh_server_factory: object) -> None:
    server: InProcessServer = ssh_server_factory(login_timeout=0.5)  # type: ignore[operator]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        received = b""
        while chunk := sock.recv(4096):  # the server's version line, then EOF
            received += chunk
    assert received.startswith(b"SSH-2.0-")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def test_too_many_unauthenticated_connections_are_dropped(ssh_server_factory: object) -> None:
    server: InProcessServer = ssh_server_factory(max_startups=3)  # type: ignore[operator]
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(3)]
    try:
        for sock in idle:  # each gets the server's version line: they are being served
            assert sock.recv(8).startswith(b"SSH-")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as extra:
            assert extra.recv(4096) == b""  # closed at once, without a greeting
        refused = server.ssh(rsync_command(".", "exit:0"))
        assert refused.returncode == 255  # a real client is turned away too while flooded
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: server.ssh(rsync_command(".", "exit:0")).returncode == 0)


def test_aes_gcm_is_chosen_without_client_options(ssh_server: InProcessServer) -> None:
    result = ssh_server.ssh(rsync_command(".", "exit:0"), options=["-v"], log_level="DEBUG1")
    assert result.returncode == 0
    assert b"client->server cipher: aes128-gcm@openssh.com" in result.stderr
    chacha = ssh_server.ssh(
        rsync_command(".", "exit:0"),
        options=["-c", "chacha20-poly1305@openssh.com"],
        log_level="INFO",
    )
    assert chacha.returncode == 255
    assert b"no matching cipher found" in chacha.stderr


def test_more_ciphers_can_be_offered(ssh_server_factory: object) -> None:
    ciphers = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")
    server: InProcessServer = ssh_server_factory(ciphers=ciphers)  # type: ignore[operator]
    chacha = server.ssh(rsync_command(".", "exit:0"), options=["-c", ciphers[1]])
    assert chacha.returncode == 0, chacha.stderr


def test_receive_backlog_stays_bounded_for_a_slow_session(ssh_server: InProcessServer) -> None:
    payload = os.urandom(16 << 20)
    result = ssh_server.ssh(rsync_command(".", "slowsink"), input=payload)
    assert (result.returncode, result.stdout) == (0, f"{len(payload)}\n".encode())
    # Reading pauses above the high-water mark; at most one more packet is queued.
    assert 0 < ssh_server.session.max_buffered <= RECV_HIGH + 64 * 1024


def test_local_forwarding_is_refused(ssh_server: InProcessServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    client = subprocess.Popen(
        [
            *ssh_argv(ssh_server.port, ssh_server.keys.client, log_level="INFO"),
            "-N",
            "-L",
            f"127.0.0.1:{local_port}:127.0.0.1:{ssh_server.port}",
            "127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ssh_env(),
    )
    try:
        wait_for(lambda: _accepts(local_port))
        with socket.create_connection(("127.0.0.1", local_port), timeout=30) as tunnel:
            assert tunnel.recv(4096) == b""  # the server refused the channel: nothing through
    finally:
        client.kill()  # ssh -N may sit on a SIGTERM until its next wake-up
        _, err = client.communicate(timeout=30)
    assert b"administratively prohibited: rsyncd-py: forwarding is not allowed" in err


def test_shutdown_is_not_blocked_by_a_client_that_stopped_reading(
    ssh_server_factory: object,
) -> None:
    server: InProcessServer = ssh_server_factory()  # type: ignore[operator]
    stuck = subprocess.Popen(  # nobody reads its stdout: the session's writes back up
        [*ssh_argv(server.port, server.keys.client), "127.0.0.1", rsync_command(".", "flood")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=ssh_env(),
    )
    try:
        wait_for(lambda: server.session.calls)
        server.call(server.server.shutdown(grace=0.2), timeout=60)
        assert server.server.active_sessions == 0
    finally:
        stuck.kill()
        stuck.communicate()


def test_from_option_limits_where_a_key_may_connect(ssh_server: InProcessServer) -> None:
    keys = ssh_server.keys
    original = keys.authorized_keys.read_bytes()
    public = Path(f"{keys.client}.pub").read_bytes()
    try:
        keys.authorized_keys.write_bytes(b'from="192.0.2.0/24" ' + public)
        assert ssh_server.ssh(rsync_command(".", "exit:0")).returncode == 255
        keys.authorized_keys.write_bytes(b'from="10.0.0.1,127.0.0.0/8" ' + public)
        assert ssh_server.ssh(rsync_command(".", "exit:0")).returncode == 0
    finally:
        keys.authorized_keys.write_bytes(original)
