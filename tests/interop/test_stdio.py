"""`rsyncd-py --server` on stdio with a stand-in session: the transport and the command.

The real session is covered by every other interop test; here a stand-in `run_server`
(installed in place of `rsyncd_py.session` by a small launcher, in the child process
only) exercises what belongs to the transport and the command: stdout is the protocol
stream and nothing else can write to it, every kind of stdin works (pipe, socketpair,
regular file, /dev/null), large transfers flow with backpressure in both directions,
closing the output is an EOF the client sees while the server still reads, and signals
and crashes end the process with rsync's exit code and one line of text.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

LAUNCHER = r"""
import asyncio, sys, types

async def run_server(stream, argv, provider, *, log=None):
    print("a stray print must never reach the protocol stream")
    mode = argv[1]
    if mode == "echo":  # echo everything, then report the total after the client's EOF
        total = 0
        while data := await stream.read(1 << 16):
            total += len(data)
            stream.write(data)
            await stream.drain()
        stream.write(b"total=%d\n" % total)
        return 0
    if mode == "half-close":  # answer, close the output, then keep reading to EOF
        stream.write(b"bye\n")
        await stream.close()
        total = 0
        while data := await stream.read(1 << 16):
            total += len(data)
        stream.write_stderr(b"read %d after close\n" % total)
        return 0
    if mode == "hang":
        stream.write(b"ready\n")
        await stream.drain()
        await asyncio.sleep(3600)
    if mode == "crash":
        raise RuntimeError("boom")
    return 99

session = types.ModuleType("rsyncd_py.session")
session.run_server = run_server
sys.modules["rsyncd_py.session"] = session
from rsyncd_py.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _server(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCHER, "--root", str(tmp_path), "--server", *args]


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, timeout=60, check=False, **options)


def test_echo_through_a_pipe_and_nothing_else_on_stdout(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    done = _run(_server(tmp_path, "echo"), input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data + b"total=%d\n" % len(data)
    assert done.stderr == b""


@pytest.mark.parametrize("source", ["file", "devnull"])
def test_stdin_that_cannot_be_polled(source: str, tmp_path: Path) -> None:
    data = os.urandom(1 << 20) if source == "file" else b""
    path = tmp_path / "input"
    path.write_bytes(data)
    with open(path if source == "file" else os.devnull, "rb") as stdin:
        done = _run(_server(tmp_path, "echo"), stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data + b"total=%d\n" % len(data)


def test_socketpair_both_ways_with_backpressure(tmp_path: Path) -> None:
    # rsync hands its remote shell one end of a socketpair as stdin and stdout; the
    # client writes 24 MiB without reading back, so both directions must stall and resume
    ours, theirs = socket.socketpair()
    with theirs:
        child = subprocess.Popen(_server(tmp_path, "echo"), stdin=theirs, stdout=theirs)
    data = os.urandom(24 << 20)

    def send() -> None:
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    received = bytearray()
    while chunk := ours.recv(1 << 20):
        received += chunk
    sender.join()
    ours.close()
    assert child.wait(timeout=60) == 0
    assert bytes(received) == data + b"total=%d\n" % len(data)


def test_closing_the_output_is_an_eof_the_client_sees(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        child = subprocess.Popen(
            _server(tmp_path, "half-close"), stdin=theirs, stdout=theirs, stderr=subprocess.PIPE
        )
    reply = bytearray()
    while chunk := ours.recv(4096):  # ends at the server's EOF, not at its exit
        reply += chunk
    assert reply == b"bye\n"
    ours.sendall(b"x" * 100_000)  # the server still reads after closing its output
    ours.shutdown(socket.SHUT_WR)
    assert child.wait(timeout=60) == 0
    assert child.stderr is not None and child.stderr.read() == b"read 100000 after close\n"
    ours.close()


def test_sigterm_ends_the_session_with_rsync_code_20(tmp_path: Path) -> None:
    child = subprocess.Popen(
        _server(tmp_path, "hang"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 20
    assert err.startswith(b"rsync error: received SIGINT, SIGTERM, or SIGHUP (code 20)")


def test_a_crash_is_one_line_and_code_15(tmp_path: Path) -> None:
    done = _run(_server(tmp_path, "crash"), input=b"")
    assert done.returncode == 15
    assert done.stdout == b""
    lines = done.stderr.splitlines()
    assert lines[0] == b"rsyncd-py: internal error: RuntimeError: boom"
    assert lines[1].startswith(b"rsync error: sibling process crashed (code 15)")
    assert b"Traceback" not in done.stderr


def test_a_crash_is_logged_with_its_traceback(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    command = _server(tmp_path, "crash")
    command[3:3] = ["--log-file", str(log)]
    done = _run(command, input=b"")
    assert done.returncode == 15
    assert b"Traceback" not in done.stderr
    assert "Traceback" in log.read_text() and "RuntimeError: boom" in log.read_text()


def test_forced_command_without_an_original_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SSH_ORIGINAL_COMMAND"}
    command = [sys.executable, "-c", LAUNCHER, "--root", str(tmp_path), "--server"]
    done = _run(command, input=b"", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(b"rsyncd-py: nothing after --server and no SSH_ORIGINAL_")


def test_forced_command_takes_the_original_command(tmp_path: Path) -> None:
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": "rsync --server echo . a\\ b"}
    command = [sys.executable, "-c", LAUNCHER, "--root", str(tmp_path), "--server"]
    done = _run(command, input=b"abc", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"abctotal=3\n"


@pytest.mark.parametrize("module", ["blockstore.backend", "rsyncd_py.session"])
def test_a_module_that_fails_to_import_is_one_line(module: str, tmp_path: Path) -> None:
    # sys.modules[name] = None makes the import raise, as a broken installation would
    launcher = LAUNCHER.replace(
        "from rsyncd_py.cli.main import main",
        f"sys.modules[{module!r}] = None\nfrom rsyncd_py.cli.main import main",
    )
    command = [sys.executable, "-c", launcher, "--root", str(tmp_path), "--server", "echo"]
    done = _run(command, input=b"")
    assert done.returncode == 15
    assert done.stdout == b""
    assert done.stderr.startswith(b"rsyncd-py: internal error: ModuleNotFoundError: import of ")
    assert b"Traceback" not in done.stderr
