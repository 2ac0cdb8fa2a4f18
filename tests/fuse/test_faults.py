"""Damaged stores seen through the mount: EIO, never wrong bytes, zeros or ENOENT.

A block is damaged in place inside its pack (one byte flipped, through the raw
backend, below every layer), or its whole pack is deleted. The mount runs with a fresh
state dir, so no good copy is cached anywhere. The file's metadata still reads; its
data answers EIO; the other files of the tree stay readable; the mount stays up.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import TreeEntry, Volume, VolumeParams, open_volume
from tests.fuse.builders import put_bytes
from tests.fuse.mounts import Mounter

BAD = random.Random(1).randbytes(300_000)  # random: stored raw, no zstd frame to trip on
GOOD = b"still fine\n" * 1000
PACK_SIZE = 64 << 10  # small packs, so the bad file's blocks and the trees part ways


def _store(tmp_path: Path, *, encrypted: bool) -> tuple[str, list[str]]:
    """A store with /bad (several blocks) and /good; returns (url, mount options)."""
    url = str(tmp_path / "store")
    key_file = str(tmp_path / "key")
    options = ["--key-file", key_file] if encrypted else []
    create_store(url, encrypt=encrypted, key_file=key_file if encrypted else None,
                 volume=VolumeParams(pack_size=PACK_SIZE).to_config())
    volume = _open(tmp_path, url, options)
    try:
        tx = volume.begin()
        put_bytes(tx, volume, b"bad", TreeEntry(b"bad", 0o100644), [BAD])
        put_bytes(tx, volume, b"good", TreeEntry(b"good", 0o100644), [GOOD])
        tx.commit()
    finally:
        volume.close()
    return url, options


def _open(tmp_path: Path, url: str, options: list[str]) -> Volume:
    key_file = options[1] if options else None
    return open_volume(url, key_file=key_file, state_dir=tmp_path / "writer-state")


def _block_location(volume: Volume, path: bytes) -> tuple[str, int, int]:
    """(pack key, offset, length) of the first block of `path`."""
    entry = volume.namespace(volume.latest()).lookup(path)
    assert entry is not None and entry.content is not None
    block_id = next(volume.reader(entry.content).blocks(0))[0]
    assert block_id is not None
    packs = volume.pack_layer
    assert packs is not None
    found = packs.index.lookup(0, block_id)
    assert found is not None
    number, offset, length = found
    return "packs/" + packs.index.pack(number).name, offset, length


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_corrupt_block_reads_as_eio(tmp_path: Path, mounter: Mounter, encrypted: bool) -> None:
    url, options = _store(tmp_path, encrypted=encrypted)
    volume = _open(tmp_path, url, options)
    try:
        key, offset, length = _block_location(volume, b"bad")
        assert volume.stack is not None
        pack = bytearray(volume.stack.raw.get(key))
        pack[offset + length // 2] ^= 0x40
        volume.stack.raw.put(key, bytes(pack))
    finally:
        volume.close()
    mount = mounter.mount(url, *options)
    bad = mount.path / "bad"
    assert os.stat(bad).st_size == len(BAD)
    with open(bad, "rb", buffering=0) as f:
        with pytest.raises(OSError) as failure:
            f.read()
        assert failure.value.errno == errno.EIO
        with pytest.raises(OSError) as again:  # not cached as good, not turned into zeros
            os.pread(f.fileno(), 100, 0)
        assert again.value.errno == errno.EIO
    assert (mount.path / "good").read_bytes() == GOOD
    assert "read: blocks/" in mount.stderr()  # the log names the damaged object


def test_a_missing_pack_is_eio_not_enoent(tmp_path: Path, mounter: Mounter) -> None:
    url, options = _store(tmp_path, encrypted=False)
    volume = _open(tmp_path, url, options)
    try:
        key, _offset, _length = _block_location(volume, b"bad")
        root = volume.latest()
        assert root is not None and root.root.subtree is not None
        packs = volume.pack_layer
        assert packs is not None
        tree_pack = packs.index.lookup(1, root.root.subtree)
        assert tree_pack is not None and "packs/" + packs.index.pack(tree_pack[0]).name != key
        assert volume.stack is not None
        volume.stack.raw.delete(key)
    finally:
        volume.close()
    mount = mounter.mount(url)
    assert sorted(os.listdir(mount.path)) == ["bad", "good"]
    with pytest.raises(OSError) as failure:
        (mount.path / "bad").read_bytes()
    assert failure.value.errno == errno.EIO
    assert (mount.path / "good").read_bytes() == GOOD
    assert mount.process.poll() is None
