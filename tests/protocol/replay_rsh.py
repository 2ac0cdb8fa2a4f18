"""A fake remote shell for `rsync -e` that replays a recorded server stream.

It ignores the command and writes the file named by $RSYNCD_PY_REPLAY to stdout, while
reading what the client sends. Like the real server, which exits once it has read the
client's last goodbye, it exits after $RSYNCD_PY_REPLAY_READ bytes from the client (the
length of the client's side of the recorded session). A real rsync client thereby talks
to a "server" whose every byte the test prepared (e.g. a captured session with our
encoder's tokens spliced in), and its exit status says whether it accepted them.
"""

from __future__ import annotations

import os
import sys
import threading


def _drain(expected: int) -> None:
    received = 0
    while received < expected and (data := os.read(0, 1 << 16)):
        received += len(data)


def main() -> int:
    with open(os.environ["RSYNCD_PY_REPLAY"], "rb") as recorded:
        stream = recorded.read()
    for fd in (0, 1):  # rsync makes its socket ends non-blocking; this side waits
        os.set_blocking(fd, True)
    reader = threading.Thread(target=_drain, args=(int(os.environ["RSYNCD_PY_REPLAY_READ"]),))
    reader.start()
    view = memoryview(stream)
    while view:
        view = view[os.write(1, view) :]
    reader.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
