"""SSH transport throughput: N MiB over real OpenSSH into (up) or out of (down) a session.

"up" pushes a file through ``ssh`` into a session that discards it (a client push);
"down" has the session write N MiB that ``ssh`` sends to /dev/null (a client pull).
Compares, on the server side, the low-level session API (`ChannelStream`, what
``rsyncd-py serve`` uses) with asyncssh's process API (``process.stdin.read()`` /
``process.stdout.write()``), under asyncio and uvloop, for aes128-gcm and
chacha20-poly1305. Each server runs in its own process; the session measures its own
CPU time (``time.process_time`` from session start to its end) and reports it on
stderr. Configurations run round-robin in each repetition so machine noise is spread
across them; figures are median (min-max).

    .venv/bin/python -m bench.ssh_transport [--size-mib 1024] [--reps 3] [--no-pin]
                                            [--direction up|down|both]

With pinning (default) the server runs on CPU 1 and the ssh client on CPU 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")
SERVERS = (
    ("session", "uvloop"),
    ("session", "asyncio"),
    ("process", "uvloop"),
    ("process", "asyncio"),
)
ALL_CIPHERS = [*CIPHERS, "aes256-gcm@openssh.com"]
_REPORT = re.compile(rb"cpu=([\d.]+) bytes=(\d+)")


def _report(started_cpu: float, total: int) -> bytes:
    return f"cpu={time.process_time() - started_cpu:.3f} bytes={total}\n".encode()


async def _serve(mode: str, keydir: Path) -> None:
    import asyncssh

    from rsyncd_py.transports.ssh import SshServer, SshSettings

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    block = os.urandom(1 << 20)
    if mode == "session":

        async def discard(stream, argv, provider, *, log=None) -> int:
            started, total = time.process_time(), 0
            if argv[-1] == "sink":
                while data := await stream.read(1 << 20):
                    total += len(data)
            else:  # "source:N"
                for _ in range(int(argv[-1].split(":")[1]) >> 20):
                    stream.write(block)
                    total += len(block)
                    await stream.drain()
            # (the last <= 512 KiB still queued is flushed after this, by the transport)
            stream.write_stderr(_report(started, total))
            return 0

        settings = SshSettings(
            host_key=host_key,
            authorized_keys=keydir / "authorized_keys",
            port=0,
            ciphers=tuple(ALL_CIPHERS),
        )
        server = SshServer(settings, provider=None, runner=discard)  # type: ignore[arg-type]
        await server.start()
        port = server.port
    else:

        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            started, total = time.process_time(), 0
            action = (process.command or "").split()[-1]
            if action == "sink":
                while data := await process.stdin.read(1 << 20):
                    total += len(data)
            else:
                for _ in range(int(action.split(":")[1]) >> 20):
                    process.stdout.write(block)
                    total += len(block)
                    await process.stdout.drain()
            process.stderr.write(_report(started, total))
            process.exit(0)

        acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=str(keydir / "authorized_keys"),
            process_factory=handle,
            encoding=None,
            allow_pty=False,
            encryption_algs=ALL_CIPHERS,
        )
        port = acceptor.get_port()
    print(port, flush=True)
    await asyncio.Event().wait()


def _serve_main(mode: str, loop: str, keydir: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(_serve(mode, Path(keydir)))
    else:
        asyncio.run(_serve(mode, Path(keydir)))


def _pinned(cpu: int, pin: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pin else []


def _start_server(
    mode: str, loop: str, keydir: Path, pin: bool
) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [*_pinned(1, pin), sys.executable, "-m", "bench.ssh_transport", "--serve", mode, loop,
         str(keydir)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def _transfer(
    direction: str, port: int, key: Path, cipher: str, data: Path, pin: bool
) -> tuple[float, float, int]:
    """Run one transfer; return (wall s, server CPU s, bytes the session counted)."""
    size = data.stat().st_size
    action = "rsync --server . sink" if direction == "up" else f"rsync --server . source:{size}"
    command = [
        "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key), "-c", cipher,
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
        "127.0.0.1", action,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    with data.open("rb") as stdin:
        started = time.monotonic()
        result = subprocess.run(
            [*_pinned(0, pin), *command],
            stdin=stdin if direction == "up" else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=True,
        )
        wall = time.monotonic() - started
    found = _REPORT.search(result.stderr)
    if not found:
        raise RuntimeError(f"no report from the server: {result.stderr!r}")
    return wall, float(found.group(1)), int(found.group(2))


def _summary(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--direction", choices=("up", "down", "both"), default="both")
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "LOOP", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve_main(*args.serve)
        return 0

    import asyncssh

    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="ssh-bench-", dir=tmpfs))
    key = asyncssh.generate_private_key("ssh-ed25519")
    (work / "client_key").write_bytes(key.export_private_key())
    (work / "client_key").chmod(0o600)
    (work / "authorized_keys").write_bytes(key.export_public_key())
    data = work / "data.bin"
    with data.open("wb") as out:
        for _ in range(args.size_mib):
            out.write(os.urandom(1 << 20))
    servers = {cfg: _start_server(*cfg, work, args.pin) for cfg in SERVERS}
    directions = ("up", "down") if args.direction == "both" else (args.direction,)
    results: dict[tuple[str, str, str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(args.reps):
            for direction in directions:
                for cfg, (_, port) in servers.items():
                    for cipher in CIPHERS:
                        wall, cpu, total = _transfer(
                            direction, port, work / "client_key", cipher, data, args.pin
                        )
                        assert total == args.size_mib << 20, total
                        results.setdefault((direction, *cfg, cipher), []).append((wall, cpu))
    finally:
        for process, _ in servers.values():
            process.kill()
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
    mib = args.size_mib
    print(f"{mib} MiB over OpenSSH (up: client push into a discarding session; down: the "
          f"session sends), {args.reps} reps, "
          f"{'pinned (server CPU1, client CPU0)' if args.pin else 'unpinned'}")  # fmt: skip
    print(f"{'dir':4} {'API':8} {'loop':8} {'cipher':30} {'MB/s':>24} {'server CPU-s/GiB':>20}")
    for (direction, mode, loop, cipher), runs in results.items():
        rates = [mib * 1.048576 / wall for wall, _ in runs]
        cpus = [cpu * 1024 / mib for _, cpu in runs]
        print(f"{direction:4} {mode:8} {loop:8} {cipher:30} {_summary(rates):>24} "
              f"{_summary(cpus):>20}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
