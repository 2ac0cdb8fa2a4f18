"""A file's block list: built bottom-up into list objects, read back by byte offset.

A file of N blocks has N fixed-width block records (objects.py). Up to
`INLINE_RECORDS` of them stay inside the file's tree entry. Longer lists are cut into
list objects (`trees/<id>`, type "L") of about `FANOUT` records each, and the tree entry
keeps only the references; if those are still too many, they are cut again, one level
up, and so on (a 1 TiB file of 64 KiB blocks becomes ~4096 leaves and a handful of
references). Cut points are content-defined (after a record whose id's first 32 bits
are 4095 mod 4096, with a hard maximum), so inserting data near the start of a big file
rewrites one or two list objects rather than all of them.

`BlockMap` answers "which blocks cover bytes [a, b)" by searching cumulative lengths at
each level (numpy) and loading the list objects it needs on demand (a small cache keeps
the ones a sequential reader is walking through).
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from blockstore.volume.blockid import HOLE_ID, tree_key
from blockstore.volume.encoding import CorruptObjectError
from blockstore.volume.objects import Content, decode_list, encode_list, record_dtype
from blockstore.volume.objectstore import ObjectStore

INLINE_RECORDS = 256
_INLINE_RECORD = struct.Struct("<32sI")  # objects.BLOCK_RECORD, for a few records
FEW_RECORDS = 4
FANOUT = 4096
MAX_FANOUT = 4 * FANOUT


def build_content(
    objects: ObjectStore,
    records: bytes,
    size: int,
    *,
    xxh128: bytes | None = None,
    md5: bytes | None = None,
) -> tuple[Content, list[bytes]]:
    """Return the `Content` for block `records` (height 0) and its list objects' ids.

    The id list is empty when the block list fits inline.
    """
    height = 0
    list_ids: list[bytes] = []
    while len(records) // record_dtype(height).itemsize > INLINE_RECORDS:
        records = _write_level(objects, height, records, list_ids)
        height += 1
    return Content(size, height, records, xxh128, md5), list_ids


def inline_blocks(content: Content) -> list[tuple[bytes | None, int]] | None:
    """(block id or None for a hole, length) of each block, if the root holds them all.

    None when the list is out of line (walking it needs I/O: use a `BlockMap`).
    """
    if content.height:
        return None
    return [
        (None if ident == HOLE_ID else ident, length)
        for ident, length in _INLINE_RECORD.iter_unpack(content.records)
    ]


def _cut_points(records: bytes, itemsize: int) -> list[int]:
    """Record indices where list objects end (content-defined, at most MAX_FANOUT apart)."""
    count = len(records) // itemsize
    head = np.ndarray(count, dtype="<u4", buffer=records, strides=(itemsize,))
    natural = (np.flatnonzero(head % FANOUT == FANOUT - 1) + 1).tolist()
    cuts: list[int] = []
    start = 0
    for end in [*natural, count]:
        while end - start > MAX_FANOUT:
            start += MAX_FANOUT
            cuts.append(start)
        if end > start:
            cuts.append(end)
            start = end
    return cuts


def _write_level(
    objects: ObjectStore, height: int, records: bytes, list_ids: list[bytes]
) -> bytes:
    """Store `records` as list objects of `height`; return the references to them."""
    dtype = record_dtype(height)
    lengths = np.frombuffer(records, dtype=dtype)["length"].astype(np.uint64)
    ends = np.cumsum(lengths)
    out = []
    start = 0
    for end in _cut_points(records, dtype.itemsize):
        piece = records[start * dtype.itemsize : end * dtype.itemsize]
        list_id = objects.put_tree(encode_list(height, piece))
        list_ids.append(list_id)
        total = int(ends[end - 1]) - (int(ends[start - 1]) if start else 0)
        out.append((list_id, total))
        start = end
    return np.array(out, dtype=record_dtype(height + 1)).tobytes()


class _Node:
    """One block-list node: its records and their cumulative end offsets."""

    __slots__ = ("ends", "height", "ids", "lengths")

    def __init__(self, height: int, records: bytes) -> None:
        table = np.frombuffer(records, dtype=record_dtype(height))
        self.height = height
        self.ids = table["id"]
        self.lengths = table["length"].astype(np.int64)
        self.ends = np.cumsum(self.lengths)


class BlockMap:
    """Random access to the blocks of one file's `Content`; thread-safe."""

    def __init__(self, objects: ObjectStore, content: Content, *, cache_nodes: int = 8) -> None:
        self._objects = objects
        self.size = content.size
        # whether the root holds the block records themselves: walking needs no I/O
        self.inline = content.height == 0
        # a small file's few records are walked in Python: numpy's per-call overhead on
        # tiny arrays cost ~10 us per file opened, a tenth of a small-file pull's sender
        self._few = inline_blocks(content) if self.inline and content.count <= FEW_RECORDS else None
        self._root = _Node(content.height, content.records) if self._few is None else None
        self._cache: OrderedDict[bytes, _Node] = OrderedDict()
        self._cache_nodes = cache_nodes
        self._lock = threading.Lock()

    def blocks(self, offset: int = 0) -> Iterator[tuple[bytes | None, int, int]]:
        """Yield (block id or None for a hole, file offset, length) from `offset` on.

        The first block yielded is the one containing `offset`.
        """
        if offset >= self.size:
            return
        if self._root is not None:
            yield from self._walk(self._root, 0, offset)
            return
        begin = 0
        for block_id, length in self._few or ():
            if begin + length > offset:
                yield block_id, begin, length
            begin += length

    def _walk(self, node: _Node, base: int, offset: int) -> Iterator[tuple[bytes | None, int, int]]:
        first = int(np.searchsorted(node.ends, offset - base, side="right"))
        for i in range(first, len(node.ends)):
            begin = base + (int(node.ends[i - 1]) if i else 0)
            ident = node.ids[i].tobytes()
            if node.height == 0:
                yield (None if ident == HOLE_ID else ident), begin, int(node.lengths[i])
            else:
                child = self._child(ident, node.height - 1)
                yield from self._walk(child, begin, max(offset, begin))

    def _child(self, list_id: bytes, height: int) -> _Node:
        with self._lock:
            node = self._cache.get(list_id)
            if node is not None:
                self._cache.move_to_end(list_id)
                return node
        key = tree_key(list_id)
        stored_height, records = decode_list(self._objects.get_tree(list_id), key)
        if stored_height != height:
            raise CorruptObjectError(
                f"{key}: list object at height {stored_height}, expected {height}", key=key
            )
        node = _Node(height, records)
        with self._lock:
            self._cache[list_id] = node
            while len(self._cache) > self._cache_nodes:
                self._cache.popitem(last=False)
        return node
