"""The local-directory backend: layout, key safety, temp files, a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest

from blockstore.backend import StoreError, StoreFullError
from blockstore.backends.localdir import TMP_DIR, LocalDirBackend

BLOCK = "blocks/3f9a0b1c2d3e4f50"


def test_layout_fans_out_content_named_objects(tmp_path) -> None:
    backend = LocalDirBackend(tmp_path)
    backend.put(BLOCK, b"block")
    backend.put("config", b"{}")
    backend.put("snapshots/2024-05-01T10:00:00Z", b"snap")
    assert (tmp_path / "blocks" / "3f" / "3f9a0b1c2d3e4f50").read_bytes() == b"block"
    assert (tmp_path / "config").read_bytes() == b"{}"
    assert (tmp_path / "snapshots" / "2024-05-01T10:00:00Z").read_bytes() == b"snap"
    assert os.listdir(tmp_path / TMP_DIR) == []  # no temp file outlives its put


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/", "../escape", "a/../../escape",
                                 ".tmp/x", "blocks/.hidden", "a b", "ünïcode", "a\0b"])
def test_malformed_keys_are_refused(tmp_path, key: str) -> None:
    backend = LocalDirBackend(tmp_path / "root")
    for operation in (lambda: backend.put(key, b"x"), lambda: backend.get(key),
                      lambda: backend.exists(key), lambda: backend.delete(key)):
        with pytest.raises(StoreError) as info:
            operation()
        assert info.value.errno == errno.EINVAL
    assert list(tmp_path.iterdir()) == []  # not even the root was created


def test_key_that_is_also_a_directory_fails_cleanly(tmp_path) -> None:
    backend = LocalDirBackend(tmp_path)
    backend.put("a/b", b"object")
    with pytest.raises(StoreError) as info:
        backend.put("a/b/c", b"needs a/b to be a directory")
    assert info.value.errno in (errno.ENOTDIR, errno.EEXIST)
    assert backend.get("a/b") == b"object"
    assert os.listdir(tmp_path / TMP_DIR) == []


def test_open_sweeps_temp_files_of_dead_writers_only(tmp_path) -> None:
    tmp = tmp_path / TMP_DIR
    tmp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp / f"{dead.pid}-0123").write_bytes(b"half-written by a crashed put")
    (tmp / f"{os.getpid()}-4567").write_bytes(b"a put in flight in a live process")
    LocalDirBackend(tmp_path, read_only=True)
    assert len(os.listdir(tmp)) == 2  # a read-only open touches nothing
    LocalDirBackend(tmp_path)
    assert os.listdir(tmp) == [f"{os.getpid()}-4567"]


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs, so a put meets a real ENOSPC (needs root)."""
    mountpoint = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
                             check=False, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@pytest.mark.root
def test_full_disk_is_store_full_with_the_os_text(tiny_filesystem) -> None:
    backend = LocalDirBackend(tiny_filesystem)
    backend.put("blocks/00aa", b"fits" * 1000)
    with pytest.raises(StoreFullError, match="No space left on device") as info:
        backend.put("blocks/00bb", os.urandom(1 << 20))
    assert info.value.errno == errno.ENOSPC
    assert backend.get("blocks/00aa") == b"fits" * 1000  # nothing lost
    assert not backend.exists("blocks/00bb")
    assert os.listdir(tiny_filesystem / TMP_DIR) == []
    with pytest.raises(StoreFullError):
        backend.put_if_absent("blocks/00cc", os.urandom(1 << 20))
    backend.put("blocks/00bb", b"small things still fit")
