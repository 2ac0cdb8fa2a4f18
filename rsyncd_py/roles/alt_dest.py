"""--link-dest, --compare-dest and --copy-dest on the receiving side.

Mirrors generator.c try_dests_reg, try_dests_non and copy_altdest_file, and main.c
check_alt_basis_dirs.

Theory of operation. The basis directories (up to 20, relative to the destination
directory or absolute from the served root; a store's ``/.snapshots/<id>/...`` too)
are searched in order for an entry at the name the sender sent, of the same type. The
best one is the first exact match (the quick check passes and the attributes are the
same), else the first with the same content, else (regular files) the first there at
all. Then:

| best found      | --link-dest        | --compare-dest      | --copy-dest       |
|-----------------|--------------------|---------------------|-------------------|
| exact           | hard link to it    | nothing to do       | copy it           |
| same content    | copy it, with the entry's attributes (regular files)          |
| a file there    | the delta basis: the sender sends only what differs        |

For a regular file this runs when the destination lacks it -- and, except with
--copy-dest, also when it has it, where only an exact match counts (the destination
file is then replaced by the link, or removed with --compare-dest). Directories,
symlinks, devices and specials are looked for only when missing; a directory is never
linked, and what they match only changes what itemize compares with (and, when exact,
hides the item line). In a store a link to a snapshot's entry is a copy of it, and any
copy shares the content instead of writing it again.

State: the resolved directories and the option that named them.
"""

from __future__ import annotations

import errno
import stat as stat_mod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import ITEM_LOCAL_CHANGE, ITEM_MATCHED, ITEM_XNAME_FOLLOWS
from rsyncd_py.protocol.errors import ExitCode, SessionError
from rsyncd_py.protocol.flist import FileEntry, is_device
from rsyncd_py.roles import ids, metadata
from rsyncd_py.roles.source_args import resolve_root_relative
from rsyncd_py.roles.transfer import Transfer
from rsyncd_py.wire import Log

if TYPE_CHECKING:
    from rsyncd_py.roles.generator import Generator

LINK_DEST: Final = "--link-dest"
COMPARE_DEST: Final = "--compare-dest"
COPY_DEST: Final = "--copy-dest"
HANDLED: Final = "handled"  # try_dests_*'s -2: the entry is dealt with


@dataclass(frozen=True, slots=True)
class Basis:
    """An entry in basis directory `index` (try_dests_*'s non-negative return).

    For a regular file it is the file to diff against; otherwise what itemize compares
    the new entry with.
    """

    index: int
    path: bytes
    st: Stat


def resolve_basis_dirs(t: Transfer) -> list[bytes]:
    """main.c check_alt_basis_dirs: the basis directories, root-relative.

    A relative one is relative to the destination directory. A missing one (or not a
    directory) is only warned about, as rsync does; one escaping the served tree ends
    the session.
    """
    opts = t.opts
    resolved = []
    for arg in opts.basis_dirs:
        raw = arg.encode("utf-8", "surrogateescape")
        path = resolve_root_relative(b"" if raw.startswith(b"/") else t.dest, raw)
        if path is None:
            raise SessionError(
                f"ERROR: {opts.alt_dest_type} arg escapes the served tree: {arg}",
                ExitCode.RERR_FILESELECT,
            )
        resolved.append(path)
    return resolved


async def warn_missing_dirs(t: Transfer) -> None:
    """check_alt_basis_dirs's warnings about basis directories that are not there."""
    for arg, path in zip(t.opts.basis_dirs, t.basis_dirs, strict=True):
        try:
            st = await t.fs.lstat(path)
        except FsError:
            st = None
        shown = arg.rstrip("/") if len(arg) > 1 else arg
        if st is None:
            t.wire.rprintf(Log.WARNING, f"{t.opts.alt_dest_type} arg does not exist: {shown}\n")
        elif not st.is_dir():
            t.wire.rprintf(Log.WARNING, f"{t.opts.alt_dest_type} arg is not a dir: {shown}\n")


def basis_path(t: Transfer, index: int, path: bytes) -> bytes:
    """Where basis directory `index` has the entry that lives at `path` here."""
    rel = path[len(t.dest) + 1 :] if t.dest else path
    base = t.basis_dirs[index]
    return base + b"/" + rel if base and rel else base or rel


class AltDests:
    """The basis-directory search of one push (see the module docstring)."""

    def __init__(self, generator: Generator) -> None:
        self.g = generator
        self.t: Transfer = generator.t
        self.kind = self.t.opts.alt_dest_type or COMPARE_DEST

    @property
    def copy_dest(self) -> bool:
        return self.kind == COPY_DEST

    # --- generator.c try_dests_reg -----------------------------------------------------

    async def regular(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None
    ) -> Basis | str | None:
        """Rsync generator.c:try_dests_reg for a regular file; `st` is what `path` has.

        Returns HANDLED (linked, copied or up to date), a Basis to diff against, or
        None (go on as if there were no basis directories).
        """
        t = self.t
        best: Basis | None = None
        level = 0
        for index in range(len(t.basis_dirs)):
            found = await self._lstat(basis_path(t, index, path))
            if found is None or not found.is_file():
                continue
            candidate = Basis(index, basis_path(t, index, path), found)
            if level == 0:
                best, level = candidate, 1
            if not await self.g.files.quick_check_ok(entry, candidate.path, found):
                continue
            if level == 1:
                best, level = candidate, 2
            if self.unchanged_attrs(entry, found):
                best, level = candidate, 3
                break
        if best is None:
            return None
        if level == 3 and self.kind != COPY_DEST:
            if st is not None:
                same = st.link_key is not None and st.link_key == best.st.link_key
                if self.kind == LINK_DEST and same:
                    return None  # already the link: the normal checks find it up to date
                if not await self._remove(path):
                    return None
            if self.kind == LINK_DEST:
                if not await self._link(path, best):
                    return await self._copy(entry, ndx, path, best, level)
                await self.g.finish_hard_link(entry, ndx, path, best.st)
                if self._report_all():
                    xflags = ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS
                    self.g.itemize(entry, ndx, best.st, xflags, xname=b"")
            else:
                self.g.itemize(entry, ndx, best.st, 0)
            self._uptodate(entry)
            return HANDLED
        if st is not None:
            return None  # an existing file is only replaced by an exact match
        if level >= 2:
            return await self._copy(entry, ndx, path, best, level)
        return best

    async def _copy(
        self, entry: FileEntry, ndx: int, path: bytes, best: Basis, level: int
    ) -> str | None:
        """try_dests_reg's try_a_copy: copy_altdest_file, then item and hard links."""
        t = self.t
        if not t.dry_run:
            wanted = metadata.wanted_stat(t, entry, None, size=best.st.size, new_content=True)
            try:
                await t.fs.copy(path, best.path, wanted)
            except FsError:
                return None  # rsync says why only with --info=copy: transfer it instead
        self.g.itemize(entry, ndx, best.st, ITEM_LOCAL_CHANGE)
        if self._attrs_report() and t.name_level >= 2 and level == 3:
            self.g.info(f"{_s(t.display_name(entry))} is uptodate\n")
        await self.g.finish_hard_link(entry, ndx, path, None)
        return HANDLED

    # --- generator.c try_dests_non -----------------------------------------------------

    async def other(self, entry: FileEntry, ndx: int, path: bytes) -> Basis | str | None:
        """Rsync generator.c:try_dests_non for a missing directory, symlink or node.

        Returns HANDLED for an exact match (linked with --link-dest unless a directory;
        the caller then shows no item line), a Basis for itemize to compare with, or
        None.
        """
        t = self.t
        kind = stat_mod.S_IFMT(entry.mode)
        best: Basis | None = None
        level = 0
        for index in range(len(t.basis_dirs)):
            found = await self._lstat(basis_path(t, index, path))
            if found is None or found.kind != kind:
                continue
            candidate = Basis(index, basis_path(t, index, path), found)
            if level < 1:
                best, level = candidate, 1
            if not _same_content(entry, found):
                continue
            if level < 2:
                best, level = candidate, 2
            if self.unchanged_attrs(entry, found):
                best, level = candidate, 3
                break
        if best is None or level < 3:
            return best
        linked = False
        if self.kind == LINK_DEST and not entry.is_dir():
            if not await self._link(path, best, report=True):
                return best
            linked = True
            await self.g.finish_hard_link(entry, ndx, path, None)
        if self._report_all() and t.opts.stdout_format_has_i:
            changes = 0 if self.kind == COMPARE_DEST and not entry.is_dir() else ITEM_LOCAL_CHANGE
            if linked:
                changes |= ITEM_XNAME_FOLLOWS
            self.g.itemize(
                entry, ndx, best.st, changes | ITEM_MATCHED, xname=b"" if linked else None
            )
        if t.name_level >= 2 and self._attrs_report():
            slash = "/" if entry.is_dir() else ""
            self.g.info(f"{_s(t.display_name(entry))}{slash} is uptodate\n")
        return HANDLED

    # --- generator.c unchanged_attrs ---------------------------------------------------

    def unchanged_attrs(self, entry: FileEntry, st: Stat) -> bool:
        """Rsync generator.c:unchanged_attrs: times, permissions, owner, ACL and xattrs."""
        t = self.t
        if entry.is_symlink():
            if t.keeps_time(entry) and metadata.mtime_differs(t, st, entry):
                return False
        else:
            if t.opts.preserve_mtimes and metadata.mtime_differs(t, st, entry):
                return False
            if metadata.perms_differ(t, st, entry):
                return False
        if ids.owner_differs(t, entry, st) or ids.group_differs(t, entry, st):
            return False
        return not t.attrs.differ(entry, st)

    # --- helpers -------------------------------------------------------------------------

    def _report_all(self) -> bool:
        """The -ii / -vv condition under which rsync itemizes entries it linked."""
        t = self.t
        return t.name_level >= 2 or t.opts.stdout_format_has_i > 1

    def _attrs_report(self) -> bool:
        """Rsync's maybe_ATTRS_REPORT: "X is uptodate" lines only when not itemizing."""
        return self.t.attrs_report

    def _uptodate(self, entry: FileEntry) -> None:
        t = self.t
        if t.name_level >= 2 and self._attrs_report():
            self.g.info(f"{_s(t.display_name(entry))} is uptodate\n")

    async def _link(self, path: bytes, best: Basis, *, report: bool = False) -> bool:
        """hard_link_one / do_link: make `path` a link to the basis entry."""
        t = self.t
        if t.dry_run:
            return True
        try:
            await t.fs.link(path, best.path)
        except FsError as exc:
            if report:
                t.wire.rprintf(
                    Log.ERROR_XFER,
                    f"rsync: [generator] failed to hard-link {_s(best.path)} with {_s(path)}: "
                    f"{exc.strerror} ({exc.errno})\n",
                )
            return False
        return True

    async def _remove(self, path: bytes) -> bool:
        t = self.t
        if t.dry_run:
            return True
        try:
            await t.fs.remove(path)
        except FsError as exc:
            return exc.errno == errno.ENOENT
        return True

    async def _lstat(self, path: bytes) -> Stat | None:
        try:
            return await self.t.fs.lstat(path)
        except FsError:
            return None


def _same_content(entry: FileEntry, st: Stat) -> bool:
    """generator.c quick_check_ok for what is not a regular file."""
    if entry.is_symlink():
        return st.link_target == entry.link_target
    if is_device(entry.mode):
        return st.rdev == metadata.makedev(entry.rdev_major, entry.rdev_minor)
    return True  # directories, and specials of the same type


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
