"""`python -m bench --profile DIR`: py-spy profiles of the rsyncd-py server per run.

Theory of operation. `Profiler.record(pid, name)` attaches `py-spy record` (sampling,
all threads, raw "folded" stacks) to the server for the duration of one client run and
stops it with SIGINT, which makes py-spy write `DIR/NAME.txt`. py-spy is a developer
tool, not a dependency (`.venv/bin/pip install py-spy`); attaching needs ptrace rights
(root, or a permissive `kernel.yama.ptrace_scope`). Profiled runs are slower, so their
timings are not comparable with unprofiled ones.

`summarise(path)` reads such a file and lists the frames that were busy: samples whose
innermost frame is a thread waiting (a queue, a lock, a condition, epoll, the event
loop's idle wait) are dropped; what remains is counted by innermost frame ("self") and
by every frame of the project's own code on the stack ("inclusive"). A runnable thread
waiting for a core also counts as busy, so on a loaded machine the shares lean towards
whatever runs longest.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_IDLE_FRAMES = (
    "_worker (concurrent/futures/thread.py:81)",  # an executor thread waiting for work
    "Condition.wait",
    "Queue.get",
    "Event.wait",
    "select (",
    "EpollSelector.select",
    "Runner.run (asyncio/runners.py:118)",  # uvloop's run_forever, in C: mostly epoll_wait
)
_ATTACH_SECONDS = 0.3
_OWN_CODE = re.compile(r"\((rsyncd_py|blockstore)/")
_ENTRY_POINTS = "rsyncd_py/cli/"


def find_py_spy() -> str | None:
    """The py-spy executable (next to this Python first), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """Records one py-spy profile per client run into `directory`."""

    def __init__(self, directory: Path, executable: str, rate: int = 200) -> None:
        self.directory = directory
        self.executable = executable
        self.rate = rate
        self.files: list[Path] = []
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def record(self, pid: int, name: str) -> Iterator[None]:
        """Sample process `pid` while the block runs; the profile goes to DIR/NAME.txt."""
        out = self.directory / f"{name}.txt"
        spy = subprocess.Popen(
            [self.executable, "record", "-p", str(pid), "-r", str(self.rate), "-f", "raw",
             "--threads", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(_ATTACH_SECONDS)  # let it attach before the run starts
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        if out.exists():
            self.files.append(out)


def summarise(path: Path, top: int = 12) -> str:
    """The busiest frames of one raw py-spy profile (see the module docstring)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in _IDLE_FRAMES):
            continue
        samples = int(count)
        busy += samples
        own[frames[-1]] += samples
        for frame in set(frames[1:]):  # frames[0] names the thread
            if _OWN_CODE.search(frame) and _ENTRY_POINTS not in frame:
                inclusive[frame] += samples
    if not busy:
        return f"{path.name}: no busy samples"
    lines = [f"{path.name}: {busy} busy samples", "  self:"]
    lines += [f"    {100 * n / busy:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive (the project's own functions):")
    lines += [f"    {100 * n / busy:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)
