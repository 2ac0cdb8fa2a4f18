"""stats: what the store holds, what it saves, what it costs.

Figures (all bytes):
- `logical_bytes`: size of the files in the newest snapshot (what a restore yields);
  `logical_bytes_all`: the same summed over every snapshot (what N full copies take;
  sparse files count at their full size, so holes show up as savings);
- `unique_bytes`: plaintext of the distinct blocks all snapshots reference (after
  dedup, before compression); `stored_block_bytes`: those blocks as stored;
- `stored_bytes`: everything in the bucket (packs, snapshots, config, lease);
- `dedup_ratio` = logical_bytes_all / unique_bytes;
  `compression_ratio` = unique_bytes / stored_block_bytes;
- objects by kind (blocks, trees and lists, packs, snapshots);
- requests by type and bytes moved: in the last session (the newest snapshot's
  figures) and in total (summed over all snapshots; sessions whose snapshots were
  forgotten no longer count);
- `monthly_cost`: storage at `Prices.storage_gb_month` plus the requests of the
  sessions committed in the last 30 days (PUT/LIST at `put_per_1000`, GET/HEAD at
  `get_per_1000`), S3 Standard prices by default.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from blockstore.layers.pack_format import PACK_PREFIX
from blockstore.volume.blockid import HOLE_ID, tree_key
from blockstore.volume.index import PACK_BITS
from blockstore.volume.objects import decode_tree
from blockstore.volume.snapshots import SNAPSHOT_PREFIX, Snapshot
from blockstore.volume.volume import Volume
from blockstore.volume.walk import Walker

MONTH_NS = 30 * 86400 * 10**9
_REQUEST_KEYS = ("puts", "gets", "heads", "deletes", "lists", "bytes_up", "bytes_down")


@dataclass(frozen=True, slots=True)
class Prices:
    """Object-store prices in dollars (S3 Standard, us-east-1, by default)."""

    storage_gb_month: float = 0.023
    put_per_1000: float = 0.005
    get_per_1000: float = 0.0004

    def requests(self, figures: dict[str, int]) -> float:
        puts = figures.get("puts", 0) + figures.get("lists", 0)
        gets = figures.get("gets", 0) + figures.get("heads", 0)
        return puts / 1000 * self.put_per_1000 + gets / 1000 * self.get_per_1000


def session_requests(snap: Snapshot) -> dict[str, int]:
    """The request figures a snapshot recorded for its session."""
    return {name: int(snap.stats.get(f"req_{name}", 0)) for name in _REQUEST_KEYS}


def store_stats(volume: Volume, prices: Prices | None = None) -> dict[str, object]:
    """All the figures of the module docstring, as a JSON-able dict."""
    prices = prices or Prices()
    snapshots = sorted(volume.snapshots.all(), key=lambda s: s.id)
    totals_memo: dict[bytes, tuple[int, int]] = {}
    per_snapshot = [_tree_totals(volume, snap.root.subtree, totals_memo) for snap in snapshots]
    unique = _unique_blocks(volume, snapshots)
    unique_bytes = sum(unique.values())
    stored_blocks, objects, stored_total = _stored(volume, unique)
    logical_all = sum(size for _files, size in per_snapshot)
    files_latest, logical_latest = per_snapshot[-1] if per_snapshot else (0, 0)
    requests_total = dict.fromkeys(_REQUEST_KEYS, 0)
    requests_month = dict.fromkeys(_REQUEST_KEYS, 0)
    month_ago = time.time_ns() - MONTH_NS
    for snap in snapshots:
        for name, value in session_requests(snap).items():
            requests_total[name] += value
            if snap.time_ns >= month_ago:
                requests_month[name] += value
    storage_cost = stored_total / 1e9 * prices.storage_gb_month
    request_cost = prices.requests(requests_month)
    return {
        "snapshots": len(snapshots),
        "latest_snapshot": snapshots[-1].id if snapshots else None,
        "files": files_latest,
        "logical_bytes": logical_latest,
        "logical_bytes_all": logical_all,
        "unique_bytes": unique_bytes,
        "stored_block_bytes": stored_blocks,
        "stored_bytes": stored_total,
        "dedup_ratio": round(logical_all / unique_bytes, 3) if unique_bytes else None,
        "compression_ratio": round(unique_bytes / stored_blocks, 3) if stored_blocks else None,
        "objects": objects,
        "requests_last_session": (
            session_requests(snapshots[-1]) if snapshots else dict.fromkeys(_REQUEST_KEYS, 0)
        ),
        "requests_total": requests_total,
        "prices": asdict(prices),
        "monthly_cost": {
            "storage": storage_cost,
            "requests_last_30_days": request_cost,
            "total": storage_cost + request_cost,
        },
    }


def _tree_totals(
    volume: Volume, tree_id: bytes | None, memo: dict[bytes, tuple[int, int]]
) -> tuple[int, int]:
    """(files, bytes) below a tree; each distinct tree is read once across snapshots."""
    if tree_id is None:
        return 0, 0
    if tree_id not in memo:
        files = size = 0
        for entry in decode_tree(volume.objects.get_tree(tree_id), tree_key(tree_id)):
            if entry.content is not None:
                files += 1
                size += entry.content.size
            elif entry.is_dir():
                sub_files, sub_size = _tree_totals(volume, entry.subtree, memo)
                files += sub_files
                size += sub_size
        memo[tree_id] = (files, size)
    return memo[tree_id]


def _unique_blocks(volume: Volume, snapshots: list[Snapshot]) -> dict[bytes, int]:
    """Plaintext length of each distinct block the snapshots reference."""
    walker = Walker(volume)
    unique: dict[bytes, int] = {}
    for snap in snapshots:
        for path, entry in walker.walk(snap):
            if entry.content is None:
                continue
            for table in walker.content_blocks(entry.content, path):
                raw = table["id"].tobytes()
                for i, length in enumerate(table["length"].tolist()):
                    unique[raw[32 * i : 32 * i + 32]] = length
    unique.pop(HOLE_ID, None)
    return unique


def _stored(volume: Volume, live: dict[bytes, int]) -> tuple[int, dict[str, int], int]:
    """(stored bytes of the live blocks, objects by kind, bytes in the bucket)."""
    pack = volume.pack_layer
    bottom = pack.inner if pack is not None else volume.backend
    listing = list(bottom.list(""))
    objects = {
        "packs": sum(1 for key, _ in listing if key.startswith(PACK_PREFIX)),
        "snapshots": sum(1 for key, _ in listing if key.startswith(SNAPSHOT_PREFIX)),
        "blocks": 0,
        "trees": 0,
    }
    stored_blocks = 0
    if pack is None:
        return stored_blocks, objects, sum(size for _key, size in listing)
    live_ids = np.array(sorted(live), dtype="S32")
    for piece in pack.index.entries():
        kinds = piece["packword"] >> np.uint32(PACK_BITS)
        objects["blocks"] += int(np.count_nonzero(kinds == 0))
        objects["trees"] += int(np.count_nonzero(kinds == 1))
        ids = np.frombuffer(piece["id"].tobytes(), dtype="S32")
        counted = (kinds == 0) & np.isin(ids, live_ids)
        stored_blocks += int(piece["length"][counted].sum())
    return stored_blocks, objects, sum(size for _key, size in listing)
