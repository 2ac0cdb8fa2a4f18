"""Pack layer: many small content-named objects travel as one large `packs/<id>` object.

Theory of operation. S3 bills per request and a PUT costs tens of milliseconds, so the
volume's blocks and tree objects (`blocks/<64 hex>`, `trees/<64 hex>`, already
compressed and encrypted one by one by the layers above) are appended to an in-memory
pack. When it reaches `pack_size` -- or `pack_objects` objects: each costs a few
hundred bytes of bookkeeping until its pack is uploaded, so a pack of tiny objects (a
tree of small files) must not grow to millions of them -- it is sealed and queued for
upload; `uploaders` threads upload packs while the callers go on filling the next one.
Sealed packs in flight are bounded: a full pack waits, unsealed, until fewer than
`uploaders + queue_depth` are waiting or uploading, and every `put` waits with it, so
memory stays bounded by about (1 + uploaders + queue_depth) x pack_size (48 MiB by
default) however many threads write (a writer blocked holding a sealed pack would add
one per thread).
Every other key passes straight through to the inner backend.

Buffers. Each object is copied into its pack's buffer as it comes, and the sealed
buffer, cut to the pack's length, is what the inner backend's `put` gets (a bytearray:
LocalDirBackend writes it, the pack cache hashes and writes it, boto3 sends it as it
sends bytes; none keeps it). Once uploaded, a pack's buffer grows back in place and
takes the next pack: at most one buffer per pack alive at once, each page-faulted and
zeroed once. Joining a fresh 16 MiB `bytes` per pack instead, above glibc's mmap
threshold, faulted in and zeroed 4,096 new pages a pack: 0.7-0.8 of a 1 GiB push's 1.9
system CPU-s (docs/PERFORMANCE.md profile 1). `flush` drops the spare buffers, so an
idle layer holds none.

The pack format (objects, trailer, tail) is pack_format.py's. A pack's name is 256
random bits: hashing 16 MiB to name it cost 0.6 CPU-s per GiB written, and nothing
needs a content name (a pack is written once and never deduplicated; what is read
back is checked per object, by the compression layer's checksum or AES-GCM, and the
trailer by its CRC). `reindex` rebuilds the local index from the trailers alone.

Where things are (the local `PackIndex`, index.py): object -> (pack number, offset,
length). `get`/`get_range` of a packed key is one range GET of its bytes inside the
pack; `get_many` looks a batch up under one index lock and reads the objects of each
pack in spans (neighbours less than SPAN_GAP apart share one range GET), so a run of a
file's blocks, mostly consecutive in their pack, costs one request. A read that misses
the index first syncs it from the bucket (another process may have written the pack
since: a long-lived reader such as a FUSE mount then reads a snapshot committed a moment
ago at once, never EIO); `exists` never does (dedup misses are the normal case). Syncs
are serialised, and a read whose miss began before the last sync started does not sync
again, so a burst of misses costs one LIST.
Objects not uploaded yet are served from memory (`_pending`: their pack, offset and
length), so a writer sees its own writes at once; a read copies them out under the lock,
since the buffer holds another pack once its own is uploaded. An object enters the
index only after its pack is uploaded, so the index never points at data the bucket
does not have.

Failures: an upload that fails drops its objects from `_pending` (so `exists` turns
false and a retry stores them again) and is reported by the next `flush()`, which is
what the volume calls before a commit. `delete` drops a key from the index (and from a
pack not yet uploaded); the bytes stay in their pack until gc repacks it. The keys
`packs/<64 hex>` are this layer's own: hidden from `list`, refused to callers.
"""

from __future__ import annotations

import builtins  # `list` is also a Backend method: annotations inside the class need this
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from blockstore.backend import Backend, IntegrityError, Layer, NotFoundError, StoreError
from blockstore.layers.pack_format import (
    KIND_PREFIXES,
    PACK_KEY_RE,
    PACK_PREFIX,
    PackBuffer,
    parse_key,
    read_trailer,
    trailer_size,
)
from blockstore.volume.index import PACK_BITS, PackIndex, PackInfo

DEFAULT_PACK_SIZE = 16 << 20
DEFAULT_PACK_OBJECTS = 16384  # objects per pack at most (~5 MB of bookkeeping)

log = logging.getLogger(__name__)


_Piece = tuple[str, tuple[int, bytes], int, int | None]  # key, (kind, id), start, length
SPAN_GAP = 256 << 10  # read through a gap this small rather than make another request
INDEX_SLICE = 1024  # objects of an uploaded pack indexed per hold of the lock
SPAN_LIMIT = 16 << 20  # bytes read at once at most (a pack's size)
# a pack buffer's room beyond pack_size (at most half of it, so that sealing a full
# pack, which cuts its buffer, keeps the memory): for the object that crosses it
# (chunks are at most 256 KiB) and the trailer (37 bytes an object); a pack that cannot
# take the next object beside its trailer is full, and an object too large for any pack
# gets a buffer of its own
PACK_HEADROOM = 512 << 10


def _spans(
    wanted: list[tuple[int, int, int]],
) -> Iterator[tuple[int, int, list[tuple[int, int, int]]]]:
    """Group (pack offset, length, tag) pieces of one pack into spans worth one read.

    Yields (start, end, members): pieces sorted by offset, joined while the gap to the
    next is at most SPAN_GAP and the span stays within SPAN_LIMIT (a file's blocks are
    mostly consecutive in their packs, so a run of them becomes one range read).
    """
    wanted.sort()
    start, end = wanted[0][0], wanted[0][0] + wanted[0][1]
    members = [wanted[0]]
    for piece in wanted[1:]:
        begin, length, _tag = piece
        if begin - end > SPAN_GAP or max(end, begin + length) - start > SPAN_LIMIT:
            yield start, end, members
            start, end, members = begin, begin + length, []
        end = max(end, begin + length)
        members.append(piece)
    yield start, end, members


class PackLayer(Layer):
    """Packs content-named objects into `packs/<id>` (see the module docstring)."""

    def __init__(
        self,
        inner: Backend,
        state_dir: Path | None,
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        pack_objects: int = DEFAULT_PACK_OBJECTS,
        uploaders: int = 2,
        queue_depth: int = 0,
    ) -> None:
        super().__init__(inner)
        self.pack_size = pack_size
        self.pack_objects = pack_objects
        self._temp_dir = (
            None if state_dir is not None else Path(tempfile.mkdtemp(prefix="packidx-"))
        )
        self.index = PackIndex((state_dir or self._temp_dir) / "packindex")  # type: ignore[operator]
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._current = PackBuffer()  # its buffer comes with its first object
        # key -> (pack serial, pack, offset, length) of objects not uploaded yet
        self._pending: dict[str, tuple[int, PackBuffer, int, int]] = {}
        # buffers of uploaded packs, kept for the next ones: at most one per pack that
        # can be alive at once (the filling one and those in flight)
        self._capacity = pack_size + min(PACK_HEADROOM, pack_size // 2)
        self._spare: builtins.list[bytearray] = []
        self._serial = 0
        self._in_flight = 0
        self._failures: list[StoreError] = []
        self._sync_lock = threading.Lock()
        self._last_sync = 0.0  # when the latest sync from the bucket started (monotonic)
        self._queue: queue.Queue[tuple[int, PackBuffer] | None] = queue.Queue()
        self._max_in_flight = max(1, uploaders + queue_depth)
        self._threads = [
            threading.Thread(target=self._upload_loop, name=f"pack-upload-{i}", daemon=True)
            for i in range(uploaders)
        ]
        for thread in self._threads:
            thread.start()
        if self.index.needs_rebuild:
            log.warning("pack index was not cleanly saved before a system crash: rebuilding")
            self.reindex()
        else:
            self.sync_from_bucket()

    # -- writing --------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        parsed = self._packed(key)
        if parsed is None:
            self.inner.put(key, data)
            return
        self._append(key, parsed, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        parsed = self._packed(key)
        if parsed is None:
            return self.inner.put_if_absent(key, data)
        with self._lock:
            if key in self._pending or self.index.lookup(*parsed) is not None:
                return False
            self._add_locked(key, parsed, data)
        return True

    def may_wait(self) -> bool:
        """Whether a `put` now could wait for an upload (every upload slot is taken).

        A hint for a caller that must not block, such as an event loop storing a small
        file in place (rsyncd_py/fs/store_io.py): while it is False a full pack is
        sealed, never waited on. Another thread may take the last slot in between, so
        the worst case of trusting it is one wait for an upload.
        """
        return self._in_flight >= self._max_in_flight

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Append a run of objects under one lock (a builder's run of new blocks)."""
        packed = [(key, self._packed(key), data) for key, data in items]
        for key, parsed, data in packed:
            if parsed is None:
                self.inner.put(key, data)
        with self._lock:
            for key, parsed, data in packed:
                if parsed is not None:
                    self._add_locked(key, parsed, data)

    def _append(self, key: str, parsed: tuple[int, bytes], data: bytes) -> None:
        with self._lock:
            self._add_locked(key, parsed, data)

    def _add_locked(self, key: str, parsed: tuple[int, bytes], data: bytes) -> None:
        """Copy into the current pack (lock held); seal it when full and there is room.

        A full pack left unsealed for lack of room is sealed first, once an upload has
        finished (waiting releases the lock): backpressure for every writer at once. A
        pack is also full when `data` does not fit in its buffer.
        """
        if len(data) >= 1 << 32:
            raise StoreError(f"{key}: object too large for a pack ({len(data)} bytes)", key=key)
        while self._full() or not self._current.fits(len(data)):
            if not self._current.entries:
                self._provide_buffer(len(data))
            elif self._in_flight < self._max_in_flight:
                self._seal_locked()
            else:
                self._idle.wait()
        offset = self._current.add(key, parsed[0], parsed[1], data)
        self._pending[key] = (self._serial, self._current, offset, len(data))
        if self._full() and self._in_flight < self._max_in_flight:
            self._seal_locked()

    def _full(self) -> bool:
        """Whether the current pack is full (by bytes or by objects; lock held)."""
        current = self._current
        return current.size >= self.pack_size or len(current.entries) >= self.pack_objects

    def _provide_buffer(self, length: int) -> None:
        """Give the empty current pack a buffer an object of `length` fits in (lock held).

        A spare one if there is one, else a new one (bytearray zeroes it: its pages are
        faulted in once, not once per pack as a fresh 16 MiB `bytes` per pack was).
        """
        self._give_back(self._current.buffer)
        if length + trailer_size(1) <= self._capacity:
            buffer = self._spare.pop() if self._spare else bytearray(self._capacity)
        else:  # an object larger than a pack: a buffer of its own, not kept
            buffer = bytearray(length + trailer_size(1))
        self._current.buffer = buffer

    def _give_back(self, buffer: bytearray) -> None:
        """Keep the buffer of a pack nothing reads any more for the next pack (lock held).

        Sealing cut it to its pack's length; it grows back in place when that cut kept
        its memory (more than half), else it is dropped, as is an odd-sized one or one
        still exported (a failed write's traceback may hold a view of it).
        """
        if not self._capacity // 2 < len(buffer) <= self._capacity:
            return
        try:
            buffer.extend(bytes(self._capacity - len(buffer)))
        except BufferError:
            return
        if len(self._spare) <= self._max_in_flight:
            self._spare.append(buffer)

    def _seal_locked(self) -> None:
        """Queue the current pack for upload (lock held); the queue never blocks."""
        if not self._current.entries:
            return
        self._queue.put((self._serial, self._current))
        self._serial += 1
        self._current = PackBuffer()
        self._in_flight += 1

    def _upload_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            serial, pack = item
            try:
                self._upload(serial, pack)
            except StoreError as exc:
                log.error("pack upload failed: %s", exc)
                with self._lock:
                    self._failures.append(exc)
            except BaseException as exc:  # keep the thread alive; report at flush
                log.exception("pack upload crashed")
                with self._lock:
                    self._failures.append(StoreError(f"pack upload crashed: {exc!r}"))
            finally:
                with self._lock:
                    for key, *_rest in pack.entries:
                        if self._pending.get(key, (None,))[0] == serial:
                            del self._pending[key]
                    self._give_back(pack.buffer)  # nothing reaches it now
                    self._in_flight -= 1
                    if self._full():  # left full for lack of room
                        self._seal_locked()
                    self._idle.notify_all()

    def _upload(self, serial: int, pack: PackBuffer) -> None:
        # not under the lock: readers copy objects out of the buffer meanwhile, by slicing
        # (no export, so the cut cannot fail), and sealing writes only after the objects
        name, created = pack.seal()
        self.inner.put(PACK_PREFIX + name, pack.buffer)
        number = self.index.add_pack(name, len(pack.buffer), created, len(pack.entries))
        # index only the objects neither deleted nor put again since; under the lock so
        # a concurrent delete cannot slip in between the check and the insert, a slice
        # at a time so writers (an event loop storing small files among them) wait for
        # one slice, not for a whole pack of 16,384 objects
        entries = pack.entries
        for start in range(0, len(entries), INDEX_SLICE):
            with self._lock:
                live = [
                    (kind, ident, offset, length)
                    for key, kind, ident, offset, length in entries[start : start + INDEX_SLICE]
                    if self._pending.get(key, (None,))[0] == serial
                ]
                self.index.insert(live, number)

    def flush(self) -> None:
        """Upload the partial pack, wait for every upload, report failures, sync."""
        with self._lock:
            self._seal_locked()
            while self._in_flight:
                self._idle.wait()
            failures, self._failures = self._failures, []
            self._spare.clear()  # an idle layer (a server between pushes) holds no packs
        self.index.sync()
        self.inner.flush()
        if failures:
            raise failures[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            for _thread in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()
            self.index.close()
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
            self.inner.close()

    # -- reading --------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        parsed = self._packed(key)
        if parsed is None:
            return self.inner.get(key)
        return self._read([(key, parsed, 0, None)])[0]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        parsed = self._packed(key)
        if parsed is None:
            return self.inner.get_range(key, offset, length)
        return self._read([(key, parsed, offset, length)])[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """The objects `keys` names; neighbours in one pack come in one range read."""
        out = [b""] * len(keys)
        packed: list[int] = []
        pieces: list[_Piece] = []
        others: list[int] = []
        for i, key in enumerate(keys):
            parsed = self._packed(key)
            if parsed is None:
                others.append(i)
            else:
                packed.append(i)
                pieces.append((key, parsed, 0, None))
        if others:
            found = self.inner.get_many([keys[i] for i in others])
            for i, data in zip(others, found, strict=True):
                out[i] = data
        for i, data in zip(packed, self._read(pieces), strict=True):
            out[i] = data
        return out

    def _read(self, pieces: list[_Piece]) -> list[bytes]:
        """The bytes of each (key, parsed key, start, length or None for the rest).

        Objects not uploaded yet come from memory; the others are located in the index
        under one lock and read in spans (`_spans`). A miss, or a pack gone from the
        bucket, syncs the index once and tries again.
        """
        out: list[bytes] = [b""] * len(pieces)
        todo = list(range(len(pieces)))
        began = time.monotonic()
        lost: dict[int, str] = {}  # piece -> the name of its pack, gone from the bucket
        for attempt in range(2):
            with self._lock:  # copied under it: an uploaded pack's buffer is reused
                pending = [self._pending_bytes(pieces[i]) for i in todo]
            unsent = [i for i, data in zip(todo, pending, strict=True) if data is None]
            for i, data in zip(todo, pending, strict=True):
                if data is not None:
                    out[i] = data
            found = self.index.lookup_many([pieces[i][1] for i in unsent]) if unsent else []
            missing = [i for i, where in zip(unsent, found, strict=True) if where is None]
            located = [
                (where, i) for i, where in zip(unsent, found, strict=True) if where is not None
            ]
            lost = self._read_located(located, pieces, out)
            todo = missing + list(lost)
            if not todo:
                return out
            if not attempt:
                if lost:
                    self.sync_from_bucket()  # repacked elsewhere? learn the new locations
                else:
                    self._sync_unless_since(began)  # written by another process since?
        key = pieces[todo[0]][0]
        if todo[0] in lost:
            raise IntegrityError(f"{key}: its pack {lost[todo[0]]} is missing", key=key)
        raise NotFoundError(f"{key}: not found", key=key)

    def _pending_bytes(self, piece: _Piece) -> bytes | None:
        """A copy of the piece's bytes if its object is not uploaded yet (lock held)."""
        held = self._pending.get(piece[0])
        if held is None:
            return None
        _serial, pack, offset, size = held
        _key, _parsed, start, length = piece
        low = min(start, size)
        high = size if length is None else max(low, min(size, start + length))
        return bytes(pack.buffer[offset + low : offset + high])

    def _read_located(
        self,
        located: list[tuple[tuple[int, int, int], int]],
        pieces: list[_Piece],
        out: list[bytes],
    ) -> dict[int, str]:
        """Fill `out` for pieces found at (pack, offset, size); return those whose pack is gone.

        The result maps each such piece to its pack's name.
        """
        lost: dict[int, str] = {}
        by_pack: dict[int, list[tuple[int, int, int]]] = {}
        for (number, offset, size), i in located:
            _key, _parsed, start, length = pieces[i]
            want = size - start if length is None else max(0, min(length, size - start))
            if want > 0:
                by_pack.setdefault(number, []).append((offset + start, want, i))
        for number, wanted in by_pack.items():
            info = self.index.pack(number)
            for span_start, span_end, members in _spans(wanted):
                try:
                    data = self.inner.get_range(
                        PACK_PREFIX + info.name, span_start, span_end - span_start
                    )
                except NotFoundError:
                    lost.update((i, info.name) for _begin, _want, i in wanted)
                    break
                if len(data) != span_end - span_start:
                    key = pieces[members[0][2]][0]
                    raise IntegrityError(f"{key}: pack {info.name} is truncated", key=key)
                for begin, want, i in members:
                    out[i] = data[begin - span_start : begin - span_start + want]
        return lost

    def exists(self, key: str) -> bool:
        parsed = self._packed(key)
        if parsed is None:
            return self.inner.exists(key)
        with self._lock:
            if key in self._pending:
                return True
        return self.index.lookup(*parsed) is not None

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        """`exists` of a batch: pending objects, then one index lookup for the rest."""
        parsed = [self._packed(key) for key in keys]
        with self._lock:
            found = [key in self._pending for key in keys]
        asked = [(i, p) for i, p in enumerate(parsed) if p is not None and not found[i]]
        located = self.index.lookup_many([p for _i, p in asked])
        for (i, _p), location in zip(asked, located, strict=True):
            found[i] = location is not None
        for i, p in enumerate(parsed):
            if p is None:
                found[i] = self.inner.exists(keys[i])
        return found

    def delete(self, key: str) -> None:
        parsed = self._packed(key)
        if parsed is None:
            self.inner.delete(key)
            return
        with self._lock:
            self._pending.pop(key, None)
        self.index.delete(*parsed)

    def delete_many(self, keys: Iterable[str]) -> None:
        passthrough = []
        for key in keys:
            if self._packed(key) is None:
                passthrough.append(key)
            else:
                self.delete(key)
        if passthrough:
            self.inner.delete_many(passthrough)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Packed keys (from the index and pending) merged with the inner keys."""
        listing = {key: size for key, size in self.inner.list(prefix) if not PACK_KEY_RE.match(key)}
        for kind, kind_prefix in enumerate(KIND_PREFIXES):
            if not (kind_prefix.startswith(prefix) or prefix.startswith(kind_prefix)):
                continue
            for piece in self.index.entries():
                words = piece["packword"] >> np.uint32(PACK_BITS)
                for ident, length in zip(
                    piece["id"][words == kind].tolist(),
                    piece["length"][words == kind].tolist(),
                    strict=True,
                ):
                    key = kind_prefix + bytes(ident).hex()
                    if key.startswith(prefix):
                        listing[key] = length
        with self._lock:
            for key, (_serial, _pack, _offset, length) in self._pending.items():
                if key.startswith(prefix):
                    listing[key] = length
        for key in sorted(listing):
            yield key, listing[key]

    # -- the bucket is the truth ----------------------------------------------------------

    def sync_from_bucket(self) -> int:
        """Index packs the bucket has and the index lacks; forget vanished packs.

        Returns the number of packs added. Cheap when nothing changed (one LIST per
        1000 packs): run at open, when a read misses the index, and when a read finds
        its pack gone. One sync runs at a time.
        """
        with self._sync_lock:
            return self._sync_locked()

    def _sync_unless_since(self, began: float) -> None:
        """Sync, unless a sync started at or after `began` (it saw what we would see)."""
        with self._sync_lock:
            if self._last_sync < began:
                self._sync_locked()

    def _sync_locked(self) -> int:
        self._last_sync = time.monotonic()
        in_bucket = {k: n for k, n in self.inner.list(PACK_PREFIX) if PACK_KEY_RE.match(k)}
        known = {info.name: info for info in self.index.packs() if not info.deleted}
        vanished = [info for name, info in known.items() if PACK_PREFIX + name not in in_bucket]
        if vanished:
            self._forget_packs({info.number for info in vanished})
        fresh = [
            (key[len(PACK_PREFIX) :], size)
            for key, size in in_bucket.items()
            if key[len(PACK_PREFIX) :] not in known
        ]
        self._index_packs(fresh)
        return len(fresh)

    def reindex(self) -> int:
        """Rebuild the local index from the bucket alone; return the number of packs."""
        self.index.clear()
        packs = [
            (key[len(PACK_PREFIX) :], size)
            for key, size in self.inner.list(PACK_PREFIX)
            if PACK_KEY_RE.match(key)
        ]
        self._index_packs(packs)
        self.index.sync()
        return len(packs)

    def _index_packs(self, packs: builtins.list[tuple[str, int]]) -> None:
        def load(item: tuple[str, int]) -> tuple[str, int, int, builtins.list[Any]]:
            name, size = item
            created, entries = read_trailer(self.inner, name, size)
            return name, size, created, entries

        with ThreadPoolExecutor(max(1, min(8, self.properties.connections))) as pool:
            for name, size, created, entries in pool.map(load, packs):
                number = self.index.add_pack(name, size, created, len(entries))
                self.index.insert([(k, i, o, n) for k, i, o, n in entries], number)

    def _forget_packs(self, numbers: set[int]) -> None:
        wanted = np.array(sorted(numbers), dtype=np.uint32)
        doomed: list[tuple[int, bytes]] = []  # gathered first: deleting changes the index
        for piece in self.index.entries():
            packs = piece["packword"] & np.uint32((1 << PACK_BITS) - 1)
            chosen = piece[np.isin(packs, wanted)]
            kinds = (chosen["packword"] >> np.uint32(PACK_BITS)).tolist()
            raw = chosen["id"].tobytes()
            doomed += [(k, raw[32 * i : 32 * i + 32]) for i, k in enumerate(kinds)]
        for kind, ident in doomed:
            self.index.delete(kind, ident)
        for number in numbers:
            self.index.remove_pack(number)

    def packs(self) -> builtins.list[PackInfo]:
        """The packs in the index (not deleted)."""
        return [info for info in self.index.packs() if not info.deleted]

    def delete_pack(self, info: PackInfo) -> None:
        """Remove a pack object (gc calls this once nothing live points into it)."""
        self.inner.delete(PACK_PREFIX + info.name)
        self.index.remove_pack(info.number)

    def _packed(self, key: str) -> tuple[int, bytes] | None:
        if PACK_KEY_RE.match(key):
            raise StoreError(f"{key}: pack objects belong to the pack layer", key=key)
        return parse_key(key)


def pack_layer_factory(inner: Backend, config: Any, state_dir: Path | None) -> PackLayer:
    """The `PackFactory` for `blockstore.factory.open_store` (pack size from the config)."""
    volume = getattr(config, "volume", {}) or {}
    return PackLayer(inner, state_dir, pack_size=int(volume.get("pack_size", DEFAULT_PACK_SIZE)))
