"""`python -m bench.inc_recurse --size small` end to end, so the benchmark cannot rot.

A 6,000-entry tree pushed into and pulled back from stock rsync (behind a throwaway
sshd) and rsyncd-py serve on a local store; every transfer must be verified and the
table and the server peak RSS lines printed. Timings and RSS are never asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists()),
    reason="the stock baseline needs root and OpenSSH's sshd",
)


def test_small_run_verifies_every_transfer(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.inc_recurse", "--size", "small",
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {tuple(line.split()[:2]) for line in done.stdout.splitlines() if line.split()[:1]}
    for scenario in ("inc_push", "inc_pull"):
        for system in ("stock", "rsyncd-local"):
            assert (scenario, system) in rows, (scenario, system)
        assert f"{scenario} rsyncd-local: server peak RSS" in done.stdout
    assert "FAIL" not in done.stdout
