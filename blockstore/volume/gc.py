"""Garbage collection: mark what the snapshots reference, sweep the rest, repack.

Theory of operation (restic's prune, on the pack index):
1. **Mark.** Walk every snapshot (walk.py; any unreadable tree or list object aborts
   gc: it must never decide on a partial view). Live = the trees and list objects
   visited plus every block their block lists name. Block ids are gathered in a
   bytearray and de-duplicated with numpy (32 bytes per id, no Python object each).
2. **Sweep.** Every indexed object that is not live is dropped from the index, unless
   its pack is younger than the grace period: a session still in flight (in this
   process or, after a forced lease takeover, another) may be about to reference
   objects it uploaded minutes ago. Dropping an entry frees nothing yet.
3. **Repack.** A pack older than the grace period with no live data is deleted. One
   whose live data is below `repack_threshold` of its size has its live objects
   copied into new packs (through the pack layer, so they are packed like any
   write), the new packs are flushed, and only then is the old pack deleted. A crash
   at any point leaves every live object in at least one pack.

gc takes the store lease (the CLI does) so no writer runs meanwhile. `dry_run`
reports what would happen and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from blockstore.backend import StoreError
from blockstore.layers.pack import PackLayer
from blockstore.layers.pack_format import object_bytes, object_key
from blockstore.volume.blockid import HOLE_ID
from blockstore.volume.index import PACK_BITS, PackInfo
from blockstore.volume.volume import Volume
from blockstore.volume.walk import Walker

DEFAULT_GRACE_SECONDS = 3600.0
DEFAULT_REPACK_THRESHOLD = 0.5
_PACK_MASK = np.uint32((1 << PACK_BITS) - 1)
_COMPACT_AT = 1 << 22  # ids gathered before de-duplicating (128 MiB)


@dataclass(slots=True)
class GcReport:
    """What gc found and did (or would do, with dry_run)."""

    snapshots: int = 0
    live_objects: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    kept_in_grace: int = 0
    deleted_packs: int = 0
    repacked_packs: int = 0
    rewritten_bytes: int = 0
    reclaimed_bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def gc(
    volume: Volume,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GcReport:
    """Collect garbage in `volume` (see the module docstring)."""
    pack = volume.pack_layer
    if pack is None:
        raise StoreError("gc needs a store opened with the pack layer")
    pack.flush()
    report = GcReport(dry_run=dry_run)
    say = progress or (lambda _message: None)
    say("marking objects referenced by snapshots")
    live_trees, live_blocks = _mark(volume, report)
    report.live_objects = len(live_trees) + len(live_blocks)
    say(f"{report.live_objects} live objects in {report.snapshots} snapshots; sweeping")
    packs = {info.number: info for info in pack.packs()}
    cutoff = time.time_ns() - int(grace_seconds * 1e9)
    young = {number for number, info in packs.items() if info.created_ns > cutoff}
    dead, live_bytes = _sweep(pack, live_trees, live_blocks, young, report)
    if not dry_run:
        for kind, ident in dead:
            pack.delete(object_key(kind, ident))
    old = [info for number, info in packs.items() if number not in young]
    empty = [info for info in old if live_bytes.get(info.number, 0) == 0]
    sparse = [
        info for info in old
        if 0 < live_bytes.get(info.number, 0) < repack_threshold * object_bytes(info)
    ]  # fmt: skip
    say(f"{len(dead)} objects unreferenced; {len(empty)} packs empty, {len(sparse)} to repack")
    report.deleted_packs = len(empty)
    report.repacked_packs = len(sparse)
    report.rewritten_bytes = sum(live_bytes[info.number] for info in sparse)
    report.reclaimed_bytes = sum(info.size for info in empty + sparse) - report.rewritten_bytes
    if not dry_run:
        _repack(pack, sparse)
        for info in empty + sparse:
            pack.delete_pack(info)
    return report


def _mark(volume: Volume, report: GcReport) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids (S32) of live trees/lists and live blocks."""
    walker = Walker(volume)  # no error handler: any unreadable object aborts gc
    gathered = bytearray()
    unique = np.zeros(0, dtype="S32")
    for snap in volume.snapshots.all():
        report.snapshots += 1
        for path, entry in walker.walk(snap):
            if entry.content is None:
                continue
            for table in walker.content_blocks(entry.content, path):
                gathered += table["id"].tobytes()
            if len(gathered) > _COMPACT_AT * 32:
                unique = _merge(unique, gathered)
                gathered = bytearray()
    blocks = _merge(unique, gathered)
    blocks = blocks[blocks != np.array(HOLE_ID, dtype="S32")]
    trees = np.unique(np.array(sorted(walker.tree_ids | walker.list_ids), dtype="S32"))
    return trees, blocks


def _merge(unique: np.ndarray, gathered: bytearray) -> np.ndarray:
    return np.unique(np.concatenate([unique, np.frombuffer(bytes(gathered), dtype="S32")]))


def _sweep(
    pack: PackLayer,
    live_trees: np.ndarray,
    live_blocks: np.ndarray,
    young: set[int],
    report: GcReport,
) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    """(dead (kind, id) list, live bytes per pack number)."""
    dead: list[tuple[int, bytes]] = []
    live_bytes: dict[int, int] = {}
    young_numbers = np.array(sorted(young), dtype=np.uint32)
    for piece in pack.index.entries():
        ids = np.frombuffer(piece["id"].tobytes(), dtype="S32")
        kinds = piece["packword"] >> np.uint32(PACK_BITS)
        numbers = piece["packword"] & _PACK_MASK
        live = np.where(kinds == 0, np.isin(ids, live_blocks), np.isin(ids, live_trees))
        in_grace = np.isin(numbers, young_numbers)
        report.kept_in_grace += int(np.count_nonzero(in_grace & ~live))
        keep = live | in_grace
        sums = np.bincount(numbers[keep].astype(np.int64), weights=piece["length"][keep])
        for number in np.flatnonzero(sums).tolist():
            live_bytes[number] = live_bytes.get(number, 0) + int(sums[number])
        gone = ~keep
        report.deleted_objects += int(np.count_nonzero(gone))
        report.deleted_bytes += int(piece["length"][gone].sum())
        dead.extend(zip(kinds[gone].tolist(), _raw_ids(piece["id"][gone]), strict=True))
    return dead, live_bytes


def _raw_ids(ids: np.ndarray) -> list[bytes]:
    """The 32-byte ids of a V32 array (S32 `tolist` would strip trailing zero bytes)."""
    raw = ids.tobytes()
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def _repack(pack: PackLayer, sparse: list[PackInfo]) -> None:
    """Copy the live objects of `sparse` packs into new packs and flush them."""
    if not sparse:
        return
    numbers = np.array(sorted(info.number for info in sparse), dtype=np.uint32)
    keys = []  # gathered first: the puts below change the index being iterated
    for piece in pack.index.entries():
        chosen = piece[np.isin(piece["packword"] & _PACK_MASK, numbers)]
        kinds = (chosen["packword"] >> np.uint32(PACK_BITS)).tolist()
        keys += [object_key(k, i) for k, i in zip(kinds, _raw_ids(chosen["id"]), strict=True)]
    for key in keys:
        pack.put(key, pack.get(key))
    pack.flush()
