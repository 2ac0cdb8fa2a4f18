"""A client killed in the middle of a push: nothing half-written becomes visible, the
server process ends, and the next push completes (on a plain directory and on the store,
whose session must be left uncommitted and its lease released)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, Target
from tests.helpers.trees import assert_same_tree, snapshot

SIZE = 8 << 20


def wait_for_server(home: Path, timeout: float) -> None:
    """Wait until no rsyncd-py process serves `home` any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
        lines = ps.stdout.splitlines()
        if not any("rsyncd_py.cli.main" in line and str(home) in line for line in lines):
            return
        time.sleep(0.1)
    raise AssertionError("the server kept running after its client died")


@pytest.mark.parametrize("target_name", ["root", "store"])
def test_killed_push_leaves_nothing_and_the_next_push_completes(
    target_name: str, rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    target: Target = h.rsyncd_root() if target_name == "root" else h.rsyncd_store()
    src = h.client_dir / "src"
    src.mkdir()
    (src / "small").write_bytes(b"first\n")
    (src / "big").write_bytes(os.urandom(SIZE))
    # the client sends at 1 MB/s, so 1.5 s in it is surely in the middle of "big"
    client = subprocess.Popen(
        h.command(target, ["-a", "--bwlimit=1000", "src/", "lh:dst/"]),
        cwd=h.client_dir,
        env=h.client_env(target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    assert client.poll() is None, "the transfer ended before it could be interrupted"
    client.kill()
    client.wait()
    wait_for_server(target.home, 60)

    if target_name == "root":
        dst = target.home / "dst"
        assert not (dst / "big").exists()
        assert not [p for p in dst.iterdir() if p.name.startswith(".")], "temp files left"
    else:  # the killed session committed nothing at all
        with pytest.raises(AssertionError):
            target.read_tree(target, "dst")

    again = h.run(target, ["-a", "src/", "lh:dst/"])
    assert again.returncode == 0, again.describe()
    assert again.tree is not None
    assert_same_tree(snapshot(src), again.tree)
