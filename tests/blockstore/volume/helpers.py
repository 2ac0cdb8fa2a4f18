"""Helpers for the volume tests: real stores (local directory) opened as volumes."""

from __future__ import annotations

import random
import stat
from pathlib import Path
from typing import Any

from blockstore.factory import create_store
from blockstore.volume import TreeEntry, Volume, VolumeParams, WrittenFile, open_volume
from blockstore.volume.chunker import ChunkParams

SMALL_PACKS = VolumeParams(chunk=ChunkParams.for_average(16 << 10), pack_size=256 << 10)


class StoreHarness:
    """One store on disk; opens volumes on it and closes them at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.url = str(tmp_path / "store")
        self.key_file: str | None = None
        self._open: list[Volume] = []

    def create(self, params: VolumeParams = SMALL_PACKS, *, encrypt: bool = False) -> None:
        if encrypt:
            self.key_file = str(self.tmp_path / "key")
        create_store(self.url, encrypt=encrypt, key_file=self.key_file, volume=params.to_config())

    def open(self, *, state: str = "state", **options: Any) -> Volume:
        volume = open_volume(
            self.url, key_file=self.key_file, state_dir=self.tmp_path / state, **options
        )
        self._open.append(volume)
        return volume

    def close(self, volume: Volume) -> None:
        self._open.remove(volume)
        volume.close()

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()


def file_entry(name: bytes, mode: int = 0o644, **fields: Any) -> TreeEntry:
    return TreeEntry(name, stat.S_IFREG | mode, **fields)


def dir_entry(name: bytes, mode: int = 0o755) -> TreeEntry:
    return TreeEntry(name, stat.S_IFDIR | mode)


def write(volume: Volume, data: bytes, *, pieces: int = 1) -> WrittenFile:
    builder = volume.new_file()
    step = max(1, -(-len(data) // pieces))
    for start in range(0, len(data), step):
        builder.write(data[start : start + step])
    return builder.finish()


def put_file(tx: Any, path: bytes, data: bytes) -> None:
    tx.put_file(path, file_entry(path.rpartition(b"/")[2]), write(tx.volume, data))


def read(volume: Volume, path: bytes, snapshot: Any = None) -> bytes:
    ns = volume.namespace(snapshot if snapshot is not None else volume.latest())
    entry = ns.lookup(path)
    assert entry is not None and entry.content is not None, path
    return volume.reader(entry.content).read(0, entry.size)


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size) if size else b""
