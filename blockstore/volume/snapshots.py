"""Snapshots: the commit objects of the volume (`snapshots/<id>`).

A snapshot names the root directory (an entry whose `subtree` is the root tree), the
commit time, the host, the snapshot it was based on, and the session's figures (files
and bytes written, what was new and what deduplicated, requests by type). Writing the
snapshot object is the commit point: everything it references was flushed and checked
before (transaction.py), so a crash at any earlier moment leaves the previous snapshot
as the newest one.

Snapshot ids sort by time: ``YYYYMMDDTHHMMSS.ffffffZ-<8 hex>`` (UTC, then random bits
so two writers never collide). A new snapshot's time is forced past its parent's, so
the newest snapshot is always the greatest id even if clocks step backwards.

Format: ``b"S" version root:entry time_ns:svarint host:bytes parent:bytes
nstats:uvarint (name:bytes value:svarint)*``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat as stat_mod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from blockstore.backend import Backend
from blockstore.volume.encoding import Decoder, header, put_bytes, put_svarint, put_uvarint
from blockstore.volume.objects import TreeEntry, decode_entry, encode_entry

SNAPSHOT_PREFIX = "snapshots/"
_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One committed state of the volume."""

    id: str
    root: TreeEntry
    time_ns: int
    host: str = ""
    parent: str | None = None
    stats: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return SNAPSHOT_PREFIX + self.id


def empty_root(time_ns: int = 0) -> TreeEntry:
    """The root entry of a volume that has no snapshot yet."""
    return TreeEntry(b"", stat_mod.S_IFDIR | 0o755, mtime_ns=time_ns)


def is_snapshot_id(text: str) -> bool:
    """Whether `text` has the shape of a snapshot id (other keys under snapshots/ are not)."""
    return bool(_ID_RE.match(text))


def new_snapshot_id(time_ns: int) -> str:
    """A fresh id for a snapshot committed at `time_ns` (UTC)."""
    when = dt.datetime.fromtimestamp(time_ns // 1_000_000_000, dt.UTC)
    micros = (time_ns // 1000) % 1_000_000
    return f"{when:%Y%m%dT%H%M%S}.{micros:06d}Z-{os.urandom(4).hex()}"


def snapshot_time_ns(snapshot_id: str) -> int:
    """The commit time an id encodes (UTC, microsecond precision), without a GET."""
    when = dt.datetime.strptime(snapshot_id[:22], "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def encode_snapshot(snap: Snapshot) -> bytes:
    """The stored form of `snap` (see the module docstring)."""
    out = header(b"S")
    encode_entry(out, snap.root)
    put_svarint(out, snap.time_ns)
    put_bytes(out, snap.host.encode())
    put_bytes(out, (snap.parent or "").encode())
    put_uvarint(out, len(snap.stats))
    for name, value in sorted(snap.stats.items()):
        put_bytes(out, name.encode())
        put_svarint(out, int(value))
    return bytes(out)


def decode_snapshot(snapshot_id: str, data: bytes) -> Snapshot:
    """Parse a stored snapshot; CorruptObjectError naming its key if it is not one."""
    d = Decoder(data, SNAPSHOT_PREFIX + snapshot_id, b"S")
    root = decode_entry(d, root=True)
    if root.name or not root.is_dir():
        raise d.error("root entry is not a directory")
    time_ns = d.svarint()
    host = d.bytes().decode(errors="replace")
    parent = d.bytes().decode(errors="replace") or None
    stats = {d.bytes().decode(errors="replace"): d.svarint() for _ in range(d.uvarint())}
    if not d.at_end():
        raise d.error("trailing bytes")
    return Snapshot(snapshot_id, root, time_ns, host, parent, stats)


class SnapshotStore:
    """Lists, reads, writes and deletes snapshot objects in a backend; thread-safe."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def ids(self) -> list[str]:
        """All snapshot ids, oldest first (one LIST request per 1000 snapshots)."""
        return [
            key[len(SNAPSHOT_PREFIX) :]
            for key, _size in self.backend.list(SNAPSHOT_PREFIX)
            if is_snapshot_id(key[len(SNAPSHOT_PREFIX) :])
        ]

    def load(self, snapshot_id: str) -> Snapshot:
        """The snapshot `snapshot_id` (NotFoundError if gone, IntegrityError if damaged)."""
        return decode_snapshot(snapshot_id, self.backend.get(SNAPSHOT_PREFIX + snapshot_id))

    def all(self) -> Iterator[Snapshot]:
        """Every snapshot, oldest first (one GET each)."""
        for snapshot_id in self.ids():
            yield self.load(snapshot_id)

    def latest(self) -> Snapshot | None:
        """The newest snapshot, or None if there is none."""
        ids = self.ids()
        return self.load(ids[-1]) if ids else None

    def put(self, snap: Snapshot) -> None:
        """Write `snap`: the commit point. Refuses to overwrite an existing id."""
        if not self.backend.put_if_absent(snap.key, encode_snapshot(snap)):
            raise FileExistsError(f"snapshot {snap.id} already exists")

    def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot object (its data stays until gc; deleting twice is no error)."""
        self.backend.delete(SNAPSHOT_PREFIX + snapshot_id)
