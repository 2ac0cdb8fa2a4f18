#!/usr/bin/env python3
"""A fake remote shell for `rsync -e`: runs the remote command locally, like sshd would.

rsync starts its remote shell as ``RSH [-l USER] [other rsh options] HOST CMD ARGS...``.
sshd joins CMD ARGS with spaces and hands the string to the user's shell; this script
does the same with ``sh -c`` (so quoting and escaping behave exactly as over ssh), after
dropping the rsh options and the host name. Use it as::

    rsync -e "python3 tools/fake_rsh.py" --rsync-path "rsyncd-py --root /tmp/x" src/ lh:dst/

Set ``RSYNCD_PY_CAPTURE=DIR`` to also record both byte streams of the session as
``DIR/<n>.c2s`` (client to server) and ``DIR/<n>.s2c`` (server to client), and the
command line as ``DIR/<n>.cmd``: the relay used to capture golden transcripts from a
real ``rsync --server``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

# ssh options that take a value (the subset rsync users put in -e)
_OPTIONS_WITH_VALUE = {"-l", "-p", "-o", "-i", "-F", "-c", "-m", "-J", "-b", "-E"}


def _split_rsh_argv(argv: list[str]) -> tuple[str, str]:
    """Return (host, remote command string) from the argv rsync gave the remote shell."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _OPTIONS_WITH_VALUE else 1
    if i >= len(argv) - 1:
        sys.exit("fake_rsh: usage: fake_rsh.py [-l user] host command...")
    return argv[i], " ".join(argv[i + 1 :])


def _pump(src: int, dst: int, log: Path) -> None:
    with log.open("wb", buffering=0) as out:
        while data := os.read(src, 1 << 16):
            out.write(data)
            os.write(dst, data)
    os.close(dst)


def _run_captured(command: str, capture_dir: Path) -> int:
    # rsync hands its remote shell non-blocking socket ends (util1.c:fd_pair); the pumps
    # below use plain blocking os.read/os.write, which would die on EAGAIN under load.
    for fd in (0, 1):
        os.set_blocking(fd, True)
    capture_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(capture_dir.glob("*.cmd")))
    (capture_dir / f"{n}.cmd").write_text(command + "\n")
    child = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    pumps = [
        threading.Thread(
            target=_pump, args=(0, os.dup(child.stdin.fileno()), capture_dir / f"{n}.c2s")
        ),
        threading.Thread(
            target=_pump, args=(child.stdout.fileno(), 1, capture_dir / f"{n}.s2c")
        ),
    ]
    child.stdin.close()
    for pump in pumps:
        pump.daemon = True
        pump.start()
    status = child.wait()
    pumps[1].join()
    return status


def main() -> int:
    _host, command = _split_rsh_argv(sys.argv[1:])
    capture = os.environ.get("RSYNCD_PY_CAPTURE")
    if capture:
        return _run_captured(command, Path(capture))
    os.execvp("sh", ["sh", "-c", command])
    return 127  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main())
