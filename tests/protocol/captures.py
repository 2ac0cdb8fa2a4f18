"""Helpers for tests that read byte streams captured from real rsync (tools/fake_rsh.py)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

MPLEX_BASE = 7
_TAGS = (0, 1, 2, 3, 4, 22, 42, 86, 100, 101, 102)
FAKE_RSH = Path(__file__).resolve().parents[2] / "tools" / "fake_rsh.py"
RSYNC = shutil.which("rsync")


def demultiplex(stream: bytes) -> bytes:
    """The MSG_DATA payloads of a captured stream, wherever multiplexing starts.

    The prefix before multiplexing (version, negotiation) varies with the protocol, so
    take the first offset from which the frames tile the rest of the stream exactly.
    """
    for start in range(256):
        data, pos = bytearray(), start
        while pos + 4 <= len(stream):
            (header,) = struct.unpack_from("<I", stream, pos)
            tag, length = (header >> 24) - MPLEX_BASE, header & 0xFFFFFF
            if tag not in _TAGS:
                break
            if tag == 0:
                data += stream[pos + 4 : pos + 4 + length]
            pos += 4 + length
        if pos == len(stream):
            return bytes(data)
    raise AssertionError("no multiplexed stream found")


def run_captured(args: list[str], capture_dir: Path) -> tuple[str, bytes]:
    """Run real rsync with the capture relay as its remote shell ("lh:" is the host).

    Returns the client's stdout and the client-to-server bytes of the session.
    """
    assert RSYNC is not None
    env = dict(os.environ, RSYNCD_PY_CAPTURE=str(capture_dir))
    proc = subprocess.run(
        [RSYNC, "-e", f"{sys.executable} {FAKE_RSH}", *args],
        capture_output=True, env=env, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode(errors="surrogateescape"), (capture_dir / "0.c2s").read_bytes()
