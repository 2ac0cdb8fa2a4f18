"""A backend that keeps one file per key under a local directory (`/abs/path` store URLs).

Theory of operation:

* Layout. Key ``a/b/name`` is the file ``ROOT/a/b/name``. Content-named objects (a last
  component of lowercase hex digits: blocks, trees, packs) fan out into a subdirectory
  named after their first two characters, ``ROOT/packs/3f/3f9a...``, as restic and
  s3backer do, so no directory grows past a few thousand entries. The mapping is
  reversible without a lookup: a fanned-out file always sits in a directory named
  after its own first two characters, and no other file qualifies for fan-out (so no
  file can take the name of a fan-out directory). A filesystem cannot hold both a
  file ``a/b`` and a file ``a/b/c``, so on this backend a key cannot also be the
  directory part of another key: such a put fails with ENOTDIR or EEXIST.
* Atomic writes. Every write goes to a temp file in ``ROOT/.tmp`` (same filesystem),
  is fsynced, then renamed (`put`) or hard-linked (`put_if_absent`, which fails with
  EEXIST if the key exists: O_EXCL semantics with no window where a partial object is
  visible) into place, and the destination directory is fsynced. Readers therefore see
  a whole old object or a whole new one.
* Temp files are named ``<pid>-<random>``; opening a writable backend removes those
  whose process is gone (a crash mid-put), and never those of a live process, because
  a read-only FUSE view and a server may open the same directory at once.
* Range reads of content-named files (a pull reads a pack in thousands of pieces) share
  one open descriptor per file, from a small LRU (`_OpenFiles`); `put` and `delete`
  through this backend drop the key's descriptor first.
* Listing walks the tree below the longest directory the prefix names, then sorts.
  Key names are restricted by `check_key`, so no key can name a path outside ROOT.

Errors map from errno: ENOENT -> NotFoundError, ENOSPC/EDQUOT -> StoreFullError with
the OS text, anything else -> StoreError carrying the OS errno.
"""

from __future__ import annotations

import builtins  # `list` is also a Backend method: annotations inside the class need this
import contextlib
import errno
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blockstore.backend import (
    Backend,
    NotFoundError,
    Properties,
    StoreError,
    StoreFullError,
    check_key,
)

TMP_DIR = ".tmp"
_FANOUT_NAME = re.compile(r"[0-9a-f]{2,}")


def _fans_out(name: str) -> bool:
    """Whether a key's last component is content-named and so lives in a fan-out dir."""
    return _FANOUT_NAME.fullmatch(name) is not None


def _store_error(exc: OSError, action: str, key: str) -> StoreError:
    """Classify an OSError from `action` on `key` into the StoreError family.

    On reads, a missing file or a path component that is a file or directory of the
    wrong kind means the key is absent; on writes it is a real failure.
    """
    message = f"{action} {key}: {exc.strerror or exc}"
    if action == "get" and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return NotFoundError(f"{key}: not found", key=key)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(message, key=key)
    return StoreError(message, key=key, errno=exc.errno)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(slots=True, eq=False)
class _Handle:
    """An open file: its descriptor, size and readers; `cached` while `_OpenFiles` holds it."""

    fd: int
    size: int
    users: int = 0
    cached: bool = False


class _OpenFiles:
    """Read descriptors of content-named files, kept open: a bounded LRU, thread-safe.

    A content-named object never changes (its name is its content), so one descriptor
    serves every range read of it: a pull reads a pack in thousands of pieces, and
    opening, stat-ing and closing the file each time cost more than the read. Other
    files are opened per read. A handle evicted or forgotten (the key was deleted or put
    again) while a read is using it is closed by that read.
    """

    def __init__(self, opener: Callable[[str], tuple[int, int]], capacity: int = 32) -> None:
        self._opener = opener
        self._capacity = capacity
        self._open: OrderedDict[str, _Handle] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, key: str) -> _Handle:
        """An open handle of `key` (hand it back with `release`); raises as `get` would."""
        with self._lock:
            handle = self._open.get(key)
            if handle is not None:
                self._open.move_to_end(key)
                handle.users += 1
                return handle
        handle = _Handle(*self._opener(key), users=1)
        if not _fans_out(key.rpartition("/")[2]):
            return handle
        with self._lock:
            if key in self._open:  # another thread opened it meanwhile: keep one
                os.close(handle.fd)
                handle = self._open[key]
                handle.users += 1
                return handle
            handle.cached = True
            self._open[key] = handle
            while len(self._open) > self._capacity:
                self._drop(self._open.popitem(last=False)[1])
        return handle

    def release(self, handle: _Handle) -> None:
        with self._lock:
            handle.users -= 1
            if not handle.cached and not handle.users:
                os.close(handle.fd)

    def forget(self, key: str) -> None:
        """Stop sharing the descriptor of `key` (it is being replaced or deleted)."""
        with self._lock:
            handle = self._open.pop(key, None)
            if handle is not None:
                self._drop(handle)

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._drop(self._open.popitem()[1])

    @staticmethod
    def _drop(handle: _Handle) -> None:
        """Take `handle` out of the cache (caller holds the lock); close it if idle."""
        handle.cached = False
        if not handle.users:
            os.close(handle.fd)


class LocalDirBackend(Backend):
    """Objects as files under `root` (see the module docstring for layout and guarantees).

    `durable=False` skips the fsyncs (for scratch stores and benchmarks only).
    `read_only=True` leaves the directory untouched on open (no temp-file sweep).
    """

    def __init__(self, root: str | Path, *, durable: bool = True, read_only: bool = False) -> None:
        self._root = Path(root)
        self._tmp = self._root / TMP_DIR
        self._durable = durable
        self._handles = _OpenFiles(self._open)
        if not read_only:
            self._sweep_temp_files()

    def __repr__(self) -> str:
        return f"LocalDirBackend({str(self._root)!r})"

    @property
    def properties(self) -> Properties:
        return Properties(connections=8, conditional_put=True, range_reads=True)

    def _path(self, key: str) -> Path:
        check_key(key)
        parent, _, name = key.rpartition("/")
        directory = self._root / parent if parent else self._root
        if _fans_out(name):
            directory = directory / name[:2]
        return directory / name

    def _key_for(self, relative_dir: str, name: str) -> str:
        """Invert `_path`: the key of file `name` found in `relative_dir` ('' for root)."""
        parent, _, last = relative_dir.rpartition("/")
        if _fans_out(name) and last == name[:2]:
            return f"{parent}/{name}" if parent else name
        return f"{relative_dir}/{name}" if relative_dir else name

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _store_error(exc, "get", key) from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        handle = self._handles.acquire(key)
        try:
            length = max(0, min(length, handle.size - offset))
            return os.pread(handle.fd, length, offset) if length else b""
        except OSError as exc:
            raise _store_error(exc, "get", key) from exc
        finally:
            self._handles.release(handle)

    def _open(self, key: str) -> tuple[int, int]:
        """(descriptor, size) of the file of `key`, opened for reading."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _store_error(exc, "get", key) from exc
        try:
            return fd, os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise _store_error(exc, "get", key) from exc

    def exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(key)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _store_error(exc, "exists", key) from exc

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        directory, _, partial = prefix.rpartition("/")
        if directory:
            check_key(directory)
        start = self._root / directory if directory else self._root
        found: list[tuple[str, int]] = []
        self._walk(start, directory, partial, found)
        found.sort()
        for key, size in found:
            if key.startswith(prefix):
                yield key, size

    def _walk(
        self, path: Path, relative: str, partial: str, found: builtins.list[tuple[str, int]]
    ) -> None:
        """Append every object below `path` whose name could match `partial` to `found`."""
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _store_error(exc, "list", relative or ".") from exc
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue  # the temp dir, and nothing a key can name
            if partial and not (name.startswith(partial) or partial.startswith(name)):
                continue  # only at the top: a fan-out dir is a prefix of its names
            child = f"{relative}/{name}" if relative else name
            if entry.is_dir(follow_symlinks=False):
                self._walk(Path(entry.path), child, "", found)
            elif entry.is_file(follow_symlinks=False):
                found.append((self._key_for(relative, name), entry.stat().st_size))

    def close(self) -> None:
        self._handles.close()

    # -- writes ----------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        temp = self._write_temp(key, data)
        try:
            self._make_dirs(path.parent, key)
            os.rename(temp, path)
        except OSError as exc:
            raise _store_error(exc, "put", key) from exc
        finally:
            self._discard(temp)  # gone already after a successful rename
            self._handles.forget(key)
        self._sync_dir(path.parent, key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if os.path.lexists(path):
            return False
        temp = self._write_temp(key, data)
        try:
            self._make_dirs(path.parent, key)
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _store_error(exc, "put", key) from exc
        finally:
            self._discard(temp)
        self._sync_dir(path.parent, key)
        return True

    def delete(self, key: str) -> None:
        self._handles.forget(key)
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise _store_error(exc, "delete", key) from exc

    def _write_temp(self, key: str, data: bytes) -> Path:
        """Write `data` to a fresh fsynced temp file and return its path."""
        temp = self._tmp / f"{os.getpid()}-{secrets.token_hex(8)}"
        try:
            os.makedirs(self._tmp, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _store_error(exc, "put", key) from exc
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._durable:
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self._discard(temp)
            raise _store_error(exc, "put", key) from exc
        os.close(fd)
        return temp

    def _make_dirs(self, directory: Path, key: str) -> None:
        """Create `directory` and missing parents, each made durable in its parent."""
        if directory.is_dir():
            return
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(new)
            self._sync_dir(new.parent, key)

    def _sync_dir(self, directory: Path, key: str) -> None:
        """Make the rename or link that named `key` in `directory` durable (fsync the dir)."""
        if not self._durable:
            return
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _store_error(exc, "put", key) from exc

    @staticmethod
    def _discard(temp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)

    def _sweep_temp_files(self) -> None:
        """Remove temp files left by processes that died mid-write."""
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _store_error(exc, "open", TMP_DIR) from exc
        for entry in entries:
            pid_text, _, _ = entry.name.partition("-")
            if pid_text.isdigit() and _pid_alive(int(pid_text)):
                continue
            self._discard(Path(entry.path))
