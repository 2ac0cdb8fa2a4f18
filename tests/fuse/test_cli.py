"""`rsyncd-py mount` / `umount` as an operator uses them, on stores a real rsync fills.

The daemon mode returns once the mount is up and `umount` ends it; start-up errors are
one line and exit status 1 with nothing left mounted; SIGINT and SIGTERM unmount a
foreground mount cleanly (exit 0); `.snapshots` picks up snapshots committed while
mounted (the root stays on the one it started with); `--snapshot` picks the root; a
tree pushed by the stock rsync client reads back identical through the mount; and an
S3 store (moto over HTTP) mounts the same way.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import TreeEntry, VolumeParams, open_volume
from tests.fuse.builders import put_bytes
from tests.fuse.mounts import FUSERMOUNT, RSYNCD_PY, Mounter, is_mounted, require_fuse
from tests.helpers.trees import assert_same_tree, build_varied_tree, snapshot

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RSYNCD_PY, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _commit(store: str, state: Path, name: bytes, data: bytes) -> str:
    volume = open_volume(store, state_dir=state)
    try:
        tx = volume.begin()
        put_bytes(tx, volume, name, TreeEntry(name, 0o100644, mtime_ns=10**18), [data])
        snap = tx.commit()
        assert snap is not None
        return snap.id
    finally:
        volume.close()


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())
    _commit(url, tmp_path / "writer", b"first", b"one")
    return url


def _servers_of(mountpoint: Path) -> list[int]:
    """Pids of processes whose command line names `mountpoint` (our daemons)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(mountpoint) in argv and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@pytest.fixture
def daemon_mountpoint(tmp_path: Path) -> Iterator[Path]:
    """A mount point whose daemon and mount are removed after the test, whatever happens."""
    require_fuse()
    path = tmp_path / "daemon-mnt"
    path.mkdir()
    yield path
    if is_mounted(path):
        subprocess.run([FUSERMOUNT, "-uz", str(path)], check=False)  # type: ignore[list-item]
    for pid in _servers_of(path):
        os.kill(pid, signal.SIGKILL)


def _wait(condition: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_daemon_mount_then_umount(store: str, tmp_path: Path, daemon_mountpoint: Path) -> None:
    result = _cli("mount", "--store", store, "--state-dir", str(tmp_path / "state"),
                  "--log-file", str(tmp_path / "daemon.log"), str(daemon_mountpoint))
    assert result.returncode == 0, result.stderr
    assert "read-only" in result.stderr and "Traceback" not in result.stderr
    assert is_mounted(daemon_mountpoint)
    assert (daemon_mountpoint / "first").read_bytes() == b"one"
    assert len(_servers_of(daemon_mountpoint)) == 1
    again = _cli("mount", "--store", store, str(daemon_mountpoint))
    assert again.returncode == 1 and "already a mount point" in again.stderr
    result = _cli("umount", str(daemon_mountpoint))
    assert result.returncode == 0, result.stderr
    assert not is_mounted(daemon_mountpoint)
    _wait(lambda: not _servers_of(daemon_mountpoint), "the daemon did not exit after umount")
    assert "unmounted" in (tmp_path / "daemon.log").read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [("no-store", "no store at"), ("not-a-dir", "not a directory"), ("no-snapshot", "no snapshot")],
)
def test_start_up_errors_are_one_line(
    store: str, tmp_path: Path, daemon_mountpoint: Path, case: str, message: str
) -> None:
    args = ["--store", store, str(daemon_mountpoint)]
    if case == "no-store":
        args[1] = str(tmp_path / "nothing-here")
    elif case == "not-a-dir":
        args[2] = str(tmp_path / "missing-dir")
    else:
        args[:0] = ["--snapshot", "19990101"]
    result = _cli("mount", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsyncd-py mount: "), result.stderr
    assert message in lines[0].lower()
    assert not is_mounted(daemon_mountpoint) and not _servers_of(daemon_mountpoint)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_unmount_cleanly(store: str, mounter: Mounter, signum: int) -> None:
    mount = mounter.mount(store)
    assert (mount.path / "first").read_bytes() == b"one"
    assert mount.stop(signum) == 0, mount.stderr()
    assert not is_mounted(mount.path)
    assert "Traceback" not in mount.stderr()


def test_new_snapshots_appear_without_remount(
    store: str, tmp_path: Path, mounter: Mounter
) -> None:
    first = os.listdir(Path(store) / "snapshots")
    mount = mounter.mount(store)
    snapshots = mount.path / ".snapshots"
    assert os.listdir(snapshots) == first
    later = _commit(store, tmp_path / "writer", b"second", b"two")
    assert os.listdir(snapshots) == [*first, later]  # re-listed on every opendir
    assert (snapshots / later / "second").read_bytes() == b"two"
    assert sorted(os.listdir(mount.path)) == ["first"]  # the root stays where it started
    prefix = first[0].partition("Z")[0]  # to the microsecond: both may share a second
    pinned = mounter.mount(store, "--snapshot", prefix, name="pinned")
    assert sorted(os.listdir(pinned.path)) == ["first"]
    latest = mounter.mount(store, name="latest")
    assert sorted(os.listdir(latest.path)) == ["first", "second"]


def test_a_tree_pushed_by_rsync_reads_back_identical(tmp_path: Path, mounter: Mounter) -> None:
    src = build_varied_tree(tmp_path / "src", big=False)
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())
    server = f"{shlex.quote(sys.executable)} -m rsyncd_py.cli.main --store {shlex.quote(url)}"
    rsh = f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'tools' / 'fake_rsh.py'))}"
    push = subprocess.run(["rsync", "-a", "-e", rsh, f"--rsync-path={server}",
                           f"{src}/", "lh:/"], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO)
    assert push.returncode == 0, push.stderr
    mount = mounter.mount(url)
    # plain -a carries no hard links: hard-a and hard-b arrive as two files
    assert_same_tree(snapshot(src), snapshot(mount.path), ignore={"links"})


def test_an_s3_store_mounts(s3_url: str, tmp_path: Path, mounter: Mounter) -> None:
    """The same view over a bucket (moto over HTTP), read-ahead fetching in parallel."""
    create_store(s3_url, volume=VolumeParams().to_config())
    data = os.urandom(3 << 20)
    first = _commit(s3_url, tmp_path / "writer", b"blob", data)
    later = _commit(s3_url, tmp_path / "writer", b"blob", b"replaced")
    mount = mounter.mount(s3_url)  # s3_url put the endpoint and credentials in os.environ
    assert (mount.path / "blob").read_bytes() == b"replaced"
    assert os.listdir(mount.path / ".snapshots") == [first, later]
    assert (mount.path / ".snapshots" / first / "blob").read_bytes() == data
