"""A fake remote shell for `rsync -e` that replays a recorded server stream.

It ignores the command and writes the file named by $RSYNCD_PY_REPLAY to stdout, while
reading what the client sends. Like the real server, which exits once it has read the
client's last goodbye, it exits after the client has sent as much as in the recorded
session: $RSYNCD_PY_REPLAY_READ is "PREFIX:DATA", the raw bytes before multiplexing
and the total MSG_DATA payload after it (frame boundaries vary from run to run). A real
rsync client thereby talks to a "server" whose every byte the test prepared (e.g. a
captured session with our encoder's tokens spliced in), and its exit status says
whether it accepted them.
"""

from __future__ import annotations

import os
import struct
import sys
import threading

MPLEX_BASE = 7


def _read_exactly(count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        piece = os.read(0, count - len(data))
        if not piece:
            raise EOFError
        data += piece
    return bytes(data)


def _drain(prefix: int, payload: int) -> None:
    """Read the client's raw prefix, then frames until `payload` data bytes arrived."""
    try:
        _read_exactly(prefix)
        while payload > 0:
            (header,) = struct.unpack("<I", _read_exactly(4))
            length = header & 0xFFFFFF
            _read_exactly(length)
            if header >> 24 == MPLEX_BASE:
                payload -= length
    except EOFError:
        pass


def main() -> int:
    with open(os.environ["RSYNCD_PY_REPLAY"], "rb") as recorded:
        stream = recorded.read()
    for fd in (0, 1):  # rsync makes its socket ends non-blocking; this side waits
        os.set_blocking(fd, True)
    prefix, payload = (int(n) for n in os.environ["RSYNCD_PY_REPLAY_READ"].split(":"))
    reader = threading.Thread(target=_drain, args=(prefix, payload))
    reader.start()
    view = memoryview(stream)
    while view:
        view = view[os.write(1, view) :]
    reader.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
