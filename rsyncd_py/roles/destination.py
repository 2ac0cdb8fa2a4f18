"""Where a push lands: rsync's main.c get_local_name, over a FileSystem.

The destination argument names a directory the file names are relative to ("mode 1")
or, for a transfer of one non-directory, the file to write ("mode 2"):

- it exists and is a directory -> mode 1 in it;
- it exists and is not a directory -> an error for more than one file or for a
  directory, else mode 2 onto it;
- it is missing and (there is more than one file, or it ends in '/') -> it is created
  (its parents too with --mkpath), then mode 1;
- otherwise -> mode 2 to that new name.

Path arguments are resolved against the served root by `resolve_path`: '.' and empty
components vanish, a leading '/' is the root, and '..' may not climb above the root.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass

from rsyncd_py.fs.base import FileSystem, FsError, Stat
from rsyncd_py.protocol.errors import ExitCode, SessionError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.roles.transfer import ACCESSPERMS, FLAG_DIR_CREATED
from rsyncd_py.wire import Log, Wire


class PathEscapesRoot(SessionError):
    """A path argument climbs above the served root."""

    def __init__(self, arg: str) -> None:
        super().__init__(
            f"rsync: [receiver] path escapes the served tree: {arg}", ExitCode.RERR_FILESELECT
        )


def resolve_path(arg: str) -> tuple[bytes, bool]:
    """Return (root-relative path, had a trailing slash) for a client path argument."""
    raw = arg.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    for part in raw.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not parts:
                raise PathEscapesRoot(arg)
            parts.pop()
            continue
        parts.append(part)
    return b"/".join(parts), raw.endswith(b"/") and len(raw) > 1


@dataclass(frozen=True, slots=True)
class Destination:
    """Mode 1: `directory` holds the names. Mode 2: `local_name` is the one file."""

    directory: bytes
    local_name: bytes | None = None
    created: bool = False  # the directory did not exist (a dry run then sees nothing)


async def get_local_name(
    fs: FileSystem,
    wire: Wire,
    entries: list[FileEntry],
    base: bytes,
    dest_arg: str | None,
    *,
    dry_run: bool,
    mkpath: bool,
    announce: bool,
    umask: int,
    owner: tuple[int, int],
    file_total: int | None = None,
) -> Destination:
    """Rsync main.c:get_local_name; `base` is the already resolved '.' argument.

    `entries` is the first file list; `file_total` counts the entries received so far
    (with incremental recursion a second list may be in already), default its length.
    """
    if dest_arg is None:
        return Destination(base)
    rel, trailing_slash = resolve_path(dest_arg)
    path = join_path(base, rel)
    shown = dest_arg.rstrip("/") if trailing_slash else dest_arg
    if file_total is None:
        file_total = len(entries)
    st = await _stat(fs, path, dest_arg)

    if mkpath and st is None and (b"/" in rel or file_total > 1):
        # make_path(MKP_DROP_NAME) unless several files go to a name without a slash;
        # with a trailing slash the dropped "name" is empty, so the whole path is made
        parents_only = file_total == 1 and not trailing_slash
        target = path.rpartition(b"/")[0] if parents_only else path
        created = await make_path(fs, target, dir_stat(umask, owner), dry_run=dry_run)
        if created and announce:
            plural = "y" if created == 1 else "ies"
            shown_path = shown.rpartition("/")[0] if parents_only else shown
            wire.rprintf(Log.INFO, f"created {created} director{plural} for {shown_path}\n")
        if created and not dry_run:
            st = await _stat(fs, path, dest_arg)

    if st is not None:
        if st.is_dir():
            return Destination(path)
        if file_total > 1:
            raise SessionError(
                "ERROR: destination must be a directory when copying more than 1 file",
                ExitCode.RERR_FILESELECT,
            )
        if file_total == 1 and entries[0].is_dir():
            raise SessionError(
                "ERROR: cannot overwrite non-directory with a directory", ExitCode.RERR_FILESELECT
            )
    if file_total > 1 or trailing_slash:
        if st is not None:
            raise SessionError("ERROR: destination path is not a directory", ExitCode.RERR_SYNTAX)
        if not dry_run:
            try:
                await fs.mkdir(path, dir_stat(umask, owner))
            except FsError as exc:
                raise SessionError(
                    f'rsync: [Receiver] mkdir "{dest_arg}" failed: {exc.strerror} ({exc.errno})',
                    ExitCode.RERR_FILEIO,
                ) from exc
        if entries and entries[0].active and entries[0].name == b".":
            entries[0].flags |= FLAG_DIR_CREATED
        if announce:
            wire.rprintf(Log.INFO, f"created directory {shown}\n")
        return Destination(path, created=True)
    return Destination(path.rpartition(b"/")[0], local_name=path)


async def _stat(fs: FileSystem, path: bytes, shown: str) -> Stat | None:
    try:
        return await fs.lstat(path)
    except FsError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise SessionError(
            f'rsync: [Receiver] ERROR: cannot stat destination "{shown}": '
            f"{exc.strerror} ({exc.errno})",
            ExitCode.RERR_FILESELECT,
        ) from exc


def dir_stat(umask: int, owner: tuple[int, int]) -> Stat:
    """A directory rsync makes itself: mode 0777 less the umask, owned by us."""
    return Stat(
        mode=0o040000 | (ACCESSPERMS & ~umask),
        mtime_ns=time.time_ns(),
        uid=owner[0],
        gid=owner[1],
    )


async def make_path(fs: FileSystem, path: bytes, dir_st: Stat, *, dry_run: bool = False) -> int:
    """util.c make_path: create the missing directories of `path`; return how many."""
    created = 0
    parts = path.split(b"/") if path else []
    for i in range(1, len(parts) + 1):
        sub = b"/".join(parts[:i])
        existing = None if dry_run and created else await fs.lstat(sub)
        if existing is not None:
            continue
        if not dry_run:
            await fs.mkdir(sub, dir_st)
        created += 1
    return created


def join_path(base: bytes, rel: bytes) -> bytes:
    """`rel` below the root-relative directory `base`."""
    if not base:
        return rel
    return base + b"/" + rel if rel else base
