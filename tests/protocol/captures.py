"""Helpers for tests that read byte streams captured from real rsync (tools/fake_rsh.py)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MPLEX_BASE = 7
_TAGS = (0, 1, 2, 3, 4, 22, 42, 86, 100, 101, 102)
CAPTURE_RSH = Path(__file__).resolve().parents[2] / "tools" / "fake_rsh.py"
REPLAY_RSH = Path(__file__).resolve().parent / "replay_rsh.py"
RSYNC = shutil.which("rsync")


@dataclass
class MuxStream:
    """A captured stream: the raw bytes before multiplexing, the data stream, and the
    other messages with the data offset at which each arrived."""

    prefix: bytes
    data: bytes
    messages: list[tuple[int, int, bytes]]

    def splice(self, start: int, end: int, replacement: bytes) -> MuxStream:
        """Replace data[start:end]; messages keep their place relative to the data."""
        shift = len(replacement) - (end - start)
        moved = [
            (at if at <= start else max(start, at + shift) if at >= end else start, tag, body)
            for at, tag, body in self.messages
        ]
        return MuxStream(self.prefix, self.data[:start] + replacement + self.data[end:], moved)

    def to_bytes(self, frame: int = 32 << 10) -> bytes:
        """Multiplex again, in MSG_DATA frames of at most `frame` bytes."""
        out = bytearray(self.prefix)
        cursor = 0
        for at, tag, body in [*sorted(self.messages, key=lambda m: m[0]), (None, 0, b"")]:
            stop = len(self.data) if at is None else at
            for begin in range(cursor, stop, frame):
                chunk = self.data[begin : min(begin + frame, stop)]
                out += struct.pack("<I", (MPLEX_BASE << 24) | len(chunk)) + chunk
            cursor = max(cursor, stop)
            if at is not None:
                out += struct.pack("<I", ((MPLEX_BASE + tag) << 24) | len(body)) + body
        return bytes(out)


def parse_mux(stream: bytes) -> MuxStream:
    """Split a captured stream, wherever multiplexing starts.

    The prefix before multiplexing (version, negotiation) varies with the protocol, so
    take the first offset from which the frames tile the rest of the stream exactly.
    """
    for start in range(256):
        data, messages, pos = bytearray(), [], start
        while pos + 4 <= len(stream):
            (header,) = struct.unpack_from("<I", stream, pos)
            tag, length = (header >> 24) - MPLEX_BASE, header & 0xFFFFFF
            if tag not in _TAGS:
                break
            body = stream[pos + 4 : pos + 4 + length]
            if tag == 0:
                data += body
            else:
                messages.append((len(data), tag, body))
            pos += 4 + length
        if pos == len(stream):
            return MuxStream(stream[:start], bytes(data), messages)
    raise AssertionError("no multiplexed stream found")


def demultiplex(stream: bytes) -> bytes:
    """The MSG_DATA payloads of a captured stream."""
    return parse_mux(stream).data


def run_captured(args: list[str], capture_dir: Path) -> tuple[str, bytes]:
    """Run real rsync with the capture relay as its remote shell ("lh:" is the host).

    Returns the client's stdout and the client-to-server bytes of the session (the
    server-to-client bytes are left in `capture_dir`/0.s2c).
    """
    assert RSYNC is not None
    env = dict(os.environ, RSYNCD_PY_CAPTURE=str(capture_dir))
    proc = subprocess.run(
        [RSYNC, "-e", f"{sys.executable} {CAPTURE_RSH}", *args],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode(errors="surrogateescape"), (capture_dir / "0.c2s").read_bytes()


def run_replayed(
    args: list[str], server_stream: bytes, client_stream: bytes, tmp: Path
) -> subprocess.CompletedProcess[bytes]:
    """Run real rsync against a "server" that sends exactly `server_stream` and exits once
    the client has sent as much as in `client_stream`, a recording (replay_rsh.py)."""
    assert RSYNC is not None
    recorded = tmp / "replayed.s2c"
    recorded.write_bytes(server_stream)
    client = parse_mux(client_stream)
    env = dict(
        os.environ,
        RSYNCD_PY_REPLAY=str(recorded),
        RSYNCD_PY_REPLAY_READ=f"{len(client.prefix)}:{len(client.data)}",
    )
    return subprocess.run(
        [RSYNC, "-e", f"{sys.executable} {REPLAY_RSH}", *args],
        capture_output=True, env=env, timeout=60, check=False,
    )
