"""fsck: checks that everything every snapshot references is present (and intact).

Checks, in order:
1. every snapshot object decodes;
2. every tree and list object reachable from a snapshot is present and decodes (the
   walker reports a missing or corrupt one with the path that references it, and
   carries on with the rest); with `read_data` its bytes are hashed again too;
3. every referenced block is present: known to the pack index *and* in a pack that
   exists in the bucket (one LIST of `packs/`), or, on a stack without packing, found
   by a HEAD;
4. with `read_data`: every referenced block and tree is downloaded, decrypted (the
   encryption layer authenticates it) and hashed again; the id must match the
   plaintext and the length the block list records. Open the volume without a cache
   for this, so the bucket's copy is what gets checked.

Each problem names the exact object key, what is wrong, and one snapshot and path that
reference it. `FsckReport.ok` is true iff there are no problems.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from blockstore.backend import NotFoundError, StoreError
from blockstore.layers.pack_format import PACK_PREFIX, parse_key
from blockstore.volume.blockid import HOLE_ID, block_key
from blockstore.volume.snapshots import Snapshot
from blockstore.volume.volume import Volume
from blockstore.volume.walk import Walker


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad object: its key, what is wrong, and a snapshot and path using it."""

    key: str
    error: str
    snapshot: str = ""
    path: str = ""

    def describe(self) -> str:
        where = f" (snapshot {self.snapshot}, {self.path or '/'})" if self.snapshot else ""
        return f"{self.key}: {self.error}{where}"


@dataclass(slots=True)
class FsckReport:
    """What fsck checked and found."""

    snapshots: int = 0
    trees: int = 0
    files: int = 0
    blocks: int = 0
    bytes_read: int = 0
    read_data: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        result = asdict(self)
        result["ok"] = self.ok
        return result


def fsck(
    volume: Volume, *, read_data: bool = False, progress: Callable[[str], None] | None = None
) -> FsckReport:
    """Check every snapshot of `volume` (see the module docstring)."""
    report = FsckReport(read_data=read_data)
    checker = _Checker(volume, report, read_data)
    for snapshot_id in volume.snapshots.ids():
        try:
            snap = volume.snapshots.load(snapshot_id)
        except StoreError as exc:
            report.problems.append(Problem(f"snapshots/{snapshot_id}", str(exc)))
            continue
        report.snapshots += 1
        if progress is not None:
            progress(f"checking snapshot {snap.id}")
        checker.check(snap)
    report.trees = len(checker.walker.tree_ids) + len(checker.walker.list_ids)
    return report


class _Checker:
    def __init__(self, volume: Volume, report: FsckReport, read_data: bool) -> None:
        self.volume = volume
        self.report = report
        self.read_data = read_data
        self.snapshot = ""
        self.walker = Walker(
            volume, on_error=self._tree_problem, on_load=self._tree_loaded if read_data else None
        )
        self.seen_blocks: set[bytes] = set()
        self.pack_layer = volume.pack_layer
        self.bucket_packs = (
            {key[len(PACK_PREFIX) :] for key, _ in self.pack_layer.inner.list(PACK_PREFIX)}
            if self.pack_layer is not None
            else set()
        )

    def _problem(self, key: str, error: str, path: bytes) -> None:
        self.report.problems.append(
            Problem(key, error, self.snapshot, path.decode("utf-8", "backslashreplace"))
        )

    def _tree_problem(self, key: str, path: bytes, exc: StoreError) -> None:
        error = "missing" if isinstance(exc, NotFoundError) else str(exc).removeprefix(key + ": ")
        self._problem(key, error, path)

    def _tree_loaded(self, key: str, data: bytes, path: bytes) -> None:
        self.report.bytes_read += len(data)
        if self.volume.objects.hasher.digest(data) != bytes.fromhex(key.rpartition("/")[2]):
            self._problem(key, "content does not match its id (corrupt)", path)

    def check(self, snap: Snapshot) -> None:
        self.snapshot = snap.id
        for path, entry in self.walker.walk(snap):
            if entry.content is None:
                continue
            self.report.files += 1
            for table in self.walker.content_blocks(entry.content, path):
                ids, lengths = table["id"].tolist(), table["length"].tolist()
                for ident, length in zip(ids, lengths, strict=True):
                    block_id = bytes(ident)
                    if block_id == HOLE_ID or block_id in self.seen_blocks:
                        continue
                    self.seen_blocks.add(block_id)
                    self.report.blocks += 1
                    self._check_block(block_key(block_id), path, int(length))

    def _check_block(self, key: str, path: bytes, length: int) -> None:
        """Presence (always) and content (read_data) of one block."""
        if not self._present(key, path):
            return
        if not self.read_data:
            return
        ident = bytes.fromhex(key.rpartition("/")[2])
        try:
            data = self.volume.backend.get(key)
        except StoreError as exc:
            self._problem(key, f"unreadable: {str(exc).removeprefix(key + ': ')}", path)
            return
        self.report.bytes_read += len(data)
        if self.volume.objects.hasher.digest(data) != ident:
            self._problem(key, "content does not match its id (corrupt)", path)
        elif len(data) != length:
            self._problem(key, f"is {len(data)} bytes, its file expects {length}", path)

    def _present(self, key: str, path: bytes) -> bool:
        if self.pack_layer is None:
            if not self.volume.backend.exists(key):
                self._problem(key, "missing", path)
                return False
            return True
        parsed = parse_key(key)
        found = self.pack_layer.index.lookup(*parsed) if parsed is not None else None
        if found is None:
            self._problem(key, "missing (not in any pack)", path)
            return False
        pack = self.pack_layer.index.pack(found[0])
        if pack.name not in self.bucket_packs:
            self._problem(key, f"missing (its pack {pack.name} is gone)", path)
            return False
        return True
