"""Deterministic benchmark data sets, generated once and reused while their spec matches.

Theory of operation. `ensure(root, spec)` makes sure `root` holds the four data sets of
`spec` and returns their paths. Everything is derived from fixed seeds, so two machines
(or two runs) get byte-identical files: random bytes come from AES-128-CTR over zeros
(about 4 GB/s here; numpy's generator makes 80 MB/s), text from a seeded vocabulary.
Every file gets a fixed mtime, so rsync's quick check (size + mtime) sees the same
thing in every run. A `.complete` marker holding the spec is written last; a root
whose marker differs (another size, an interrupted run) is wiped and rebuilt.

    big/big.bin     `big_bytes` of random data (mtime BASE_MTIME)
    delta/big.bin   the same file with 1% of its 4 KiB regions, at random places,
                    overwritten with other random bytes (mtime BASE_MTIME + 3600)
    small/dNN/fNNNN `small_files` random files of 4 KiB in `small_dirs` directories
    text/dNN/*.txt  `text_bytes` of compressible text-like files of varied sizes
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BASE_MTIME = 1_700_000_000
REGION = 4096
CHANGED_FRACTION = 0.01
_PIECE = 16 << 20
_FORMAT = 1  # bump when the generators change, so old caches are rebuilt


@dataclass(frozen=True, slots=True)
class DataSpec:
    """Sizes of the data sets (see the module docstring)."""

    name: str
    big_bytes: int
    small_files: int
    small_dirs: int
    text_bytes: int
    text_files: int


SPECS = {
    "full": DataSpec("full", 1 << 30, 10_000, 100, 500_000_000, 1000),
    "small": DataSpec("small", 16 << 20, 300, 10, 8_000_000, 40),
}


@dataclass(frozen=True, slots=True)
class DataSets:
    """Where the data sets of one spec live."""

    root: Path
    spec: DataSpec

    @property
    def big(self) -> Path:
        return self.root / "big"

    @property
    def delta(self) -> Path:
        return self.root / "delta"

    @property
    def small(self) -> Path:
        return self.root / "small"

    @property
    def text(self) -> Path:
        return self.root / "text"

    def tree_bytes(self, name: str) -> int:
        """Total file bytes of one data set directory."""
        return sum(p.stat().st_size for p in (self.root / name).rglob("*") if p.is_file())


def ensure(root: Path, spec: DataSpec) -> DataSets:
    """Build the data sets of `spec` under `root` unless they are already there."""
    sets = DataSets(root, spec)
    marker = root / ".complete"
    wanted = json.dumps({"format": _FORMAT, **asdict(spec)}, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return sets
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _write_big(sets.big / "big.bin", spec.big_bytes)
    _write_delta(sets.big / "big.bin", sets.delta / "big.bin")
    _write_small(sets.small, spec.small_files, spec.small_dirs)
    _write_text(sets.text, spec.text_bytes, spec.text_files)
    marker.write_text(wanted)
    return sets


def _random_stream(seed: str) -> Cipher:
    key = hashlib.sha256(seed.encode()).digest()[:16]
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()


def _random_bytes(stream: Cipher, size: int) -> bytes:
    return stream.update(bytes(size))


def _finish(path: Path, mtime: int) -> None:
    os.utime(path, (mtime, mtime))


def _write_big(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True)
    stream = _random_stream("big")
    with path.open("wb") as out:
        for start in range(0, size, _PIECE):
            out.write(_random_bytes(stream, min(_PIECE, size - start)))
    _finish(path, BASE_MTIME)


def _write_delta(original: Path, path: Path) -> None:
    """Copy `original` and overwrite 1% of its 4 KiB regions with new random bytes."""
    path.parent.mkdir(parents=True)
    shutil.copyfile(original, path)
    regions = original.stat().st_size // REGION
    rng = np.random.default_rng(1)
    changed = np.sort(rng.choice(regions, max(1, int(regions * CHANGED_FRACTION)), replace=False))
    stream = _random_stream("delta")
    with path.open("r+b") as out:
        for region in changed.tolist():
            out.seek(region * REGION)
            out.write(_random_bytes(stream, REGION))
    _finish(path, BASE_MTIME + 3600)


def _write_small(root: Path, files: int, dirs: int) -> None:
    stream = _random_stream("small")
    per_dir = -(-files // dirs)
    for index in range(files):
        directory = root / f"d{index // per_dir:02d}"
        if index % per_dir == 0:
            directory.mkdir(parents=True)
        path = directory / f"f{index:05d}"
        path.write_bytes(_random_bytes(stream, REGION))
        _finish(path, BASE_MTIME)
    for directory in root.iterdir():
        _finish(directory, BASE_MTIME)


class _TextSource:
    """Text-like bytes: words of a seeded 8,000-word vocabulary in sentences and lines.

    Built by gathering vocabulary entries with numpy (no Python loop per word), it
    compresses about 3x with zstd, like source code or prose does.
    """

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)
        weights = np.linspace(2.0, 0.2, len(letters))
        entries = []
        for _ in range(8000):
            word = letters[rng.choice(len(letters), rng.integers(2, 11), p=weights / weights.sum())]
            tail = rng.choice([b" ", b" ", b" ", b" ", b" ", b", ", b".\n", b"\n    "])
            entries.append(word.tobytes() + tail)
        self.pool = np.frombuffer(b"".join(entries), dtype=np.uint8)
        self.lengths = np.array([len(e) for e in entries], dtype=np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths
        # Zipf-like word frequencies, as in natural text.
        ranks = 1.0 / np.arange(1, len(entries) + 1)
        self.p = ranks / ranks.sum()
        self.rng = np.random.default_rng(8)

    def make(self, size: int) -> bytes:
        words = self.rng.choice(len(self.lengths), size // 5 + 16, p=self.p)
        lengths = self.lengths[words]
        ends = np.cumsum(lengths)
        count = int(np.searchsorted(ends, size)) + 1
        words, lengths, ends = words[:count], lengths[:count], ends[:count]
        shift = np.repeat(self.starts[words] - (ends - lengths), lengths)
        gathered = self.pool[shift + np.arange(int(ends[-1]))]
        return gathered[:size].tobytes()


def _write_text(root: Path, total: int, files: int) -> None:
    source = _TextSource()
    rng = np.random.default_rng(9)
    weights = rng.lognormal(0.0, 1.0, files)
    sizes = np.maximum((weights / weights.sum() * total).astype(np.int64), 1)
    sizes[-1] += total - int(sizes.sum())
    per_dir = 50
    for index, size in enumerate(sizes.tolist()):
        directory = root / f"d{index // per_dir:02d}"
        if index % per_dir == 0:
            directory.mkdir(parents=True)
        path = directory / f"doc{index:04d}.txt"
        path.write_bytes(source.make(size))
        _finish(path, BASE_MTIME)
    for directory in root.iterdir():
        _finish(directory, BASE_MTIME)
