"""`python -m bench.pull --size small` runs end to end, so the pull benchmark cannot rot.

It must verify every transfer (exit 0), print the full and delta pull rows for stock
rsync and rsyncd-py, and the block-search throughput lines; the delta pull must send
far less literal data than the full one. No timing is asserted here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pull_bench_small(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.pull", "--size", "small", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    literal = {
        (scenario, system): float(line.split()[-3])
        for line in out.splitlines()
        for scenario in ("pull_full", "pull_delta")
        for system in ("stock", "rsyncd-local")
        if line.startswith(scenario) and line.split()[1] == system
    }
    assert set(literal) == {
        (s, y) for s in ("pull_full", "pull_delta") for y in ("stock", "rsyncd-local")
    }, out
    assert literal[("pull_delta", "rsyncd-local")] < literal[("pull_full", "rsyncd-local")] / 10, (
        out
    )
    assert re.search(r"1% changed\s+\d+ MB/s\s+matched\s+9\d\.\d%", out), out
    assert re.search(r"no matches\s+\d+ MB/s\s+matched\s+0\.0%", out), out
