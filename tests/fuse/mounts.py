"""Real mounts for the FUSE tier, always unmounted afterwards.

`Mounter.mount` starts ``rsyncd-py mount --foreground`` in a subprocess (the way an
operator or systemd runs it) and waits until the kernel lists the mount. `cleanup`
ends every mount it made whatever happened: SIGTERM (the clean path), then
``fusermount3 -uz`` and SIGKILL if that did not work, so no test leaves a mount
behind (the `mounter` fixture in conftest.py calls it at teardown).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")
MOUNT_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0
RSYNCD_PY = [sys.executable, "-m", "rsyncd_py.cli.main"]


def require_fuse() -> None:
    """Skip the calling test unless this machine can mount (the only reason to skip)."""
    if not os.path.exists("/dev/fuse") or FUSERMOUNT is None:
        pytest.skip("FUSE mounts need /dev/fuse and fusermount3")


@dataclass
class Mount:
    """One `rsyncd-py mount --foreground` process and its mount point."""

    path: Path
    process: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` and return the exit status (the mount must then be gone)."""
        self.process.send_signal(signum)
        return self.process.wait(EXIT_TIMEOUT)


def is_mounted(path: Path) -> bool:
    target = os.fsencode(path)
    with open("/proc/self/mountinfo", "rb") as mounts:
        return any(line.split()[4] == target for line in mounts)


def wait_mounted(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while not is_mounted(path):
        if process.poll() is not None:
            raise AssertionError(f"mount exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no mount at {path} after {MOUNT_TIMEOUT} s:\n{log.read_text()}")
        time.sleep(0.02)


class Mounter:
    """Starts mounts for one test and ends them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        require_fuse()
        self._tmp = tmp_path
        self.mounts: list[Mount] = []

    def mount(self, store: str, *args: str, name: str = "mnt") -> Mount:
        path = self._tmp / name
        path.mkdir(exist_ok=True)
        log = self._tmp / f"{name}.log"
        state = self._tmp / f"{name}-state"  # fresh: nothing cached from the writer
        argv = [*RSYNCD_PY, "mount", "--foreground", "--store", store,
                "--state-dir", str(state), *args, str(path)]
        with open(log, "wb") as err:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        mount = Mount(path, process, log, argv)
        self.mounts.append(mount)
        wait_mounted(path, process, log)
        return mount

    def cleanup(self) -> None:
        for mount in self.mounts:
            if mount.process.poll() is None:
                mount.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    mount.process.wait(EXIT_TIMEOUT)
            if is_mounted(mount.path):
                subprocess.run([FUSERMOUNT, "-uz", str(mount.path)], check=False)  # type: ignore[list-item]
            if mount.process.poll() is None:
                mount.process.kill()
                mount.process.wait()
