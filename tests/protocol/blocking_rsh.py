"""Run tools/fake_rsh.py with blocking stdin and stdout.

rsync hands its remote shell non-blocking socket ends (`util1.c:fd_pair` sets
O_NONBLOCK on both), while fake_rsh's capture pumps use plain `os.write`, which then
fails with EAGAIN when the client is slow to read (a capture hangs under load). Until
fake_rsh sets its descriptors blocking itself, the capture tests start it through here.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

FAKE_RSH = Path(__file__).resolve().parents[2] / "tools" / "fake_rsh.py"

if __name__ == "__main__":
    for fd in (0, 1):
        os.set_blocking(fd, True)
    sys.argv = [str(FAKE_RSH), *sys.argv[1:]]
    runpy.run_path(str(FAKE_RSH), run_name="__main__")
