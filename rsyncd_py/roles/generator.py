"""The generator half of a push: decide, per file-list entry, what the sender must send.

Mirrors generator.c recv_generator / itemize. For every active entry the generator
looks at what the destination holds, creates directories, symlinks, devices and
specials itself, fixes attributes of what is already up to date, reports each change as
an item record, and for a regular file that differs asks the sender for it: the index,
ITEM_TRANSFER flags and the block sums of the existing file (the basis), so unchanged
blocks travel as references. The walk over the file lists and the phase protocol around
it are gen_phases.py (generate_files); regular files are gen_file.py, hard links
hardlinks.py.

With incremental recursion a directory is met twice: as an entry of its parent's list,
where it is only created if missing (so the parent's time can be fixed as soon as the
parent's list is done), and as the directory of its own list (`parent_dir`), where it
is itemized and its attributes set. `lists` is the generator's view of the lists not
freed yet; `count` keeps each list's in-flight count, which decides when it is freed.

State across entries (rsync's statics in recv_generator): the directory whose contents
are skipped after a failed mkdir (`_skip_dir`), the missing directory a dry run pretends
to create (`_dry_missing_dir`), the parent directory last checked, and `redo` while a
redo request is generated.
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import replace

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import (
    FNAMECMP_FNAME,
    ITEM_BASIS_TYPE_FOLLOWS,
    ITEM_IS_NEW,
    ITEM_LOCAL_CHANGE,
    ITEM_REPORT_CHANGE,
    ITEM_REPORT_XATTR,
    MSG_SUCCESS,
    SIGNIFICANT_ITEM_FLAGS,
)
from rsyncd_py.protocol.errors import ProtocolError
from rsyncd_py.protocol.flist import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FileEntry,
    is_device,
    is_special,
)
from rsyncd_py.protocol.flist_chain import FileLists
from rsyncd_py.protocol.ints import pack_int
from rsyncd_py.protocol.itemize import pack_item
from rsyncd_py.roles import metadata
from rsyncd_py.roles.alt_dest import HANDLED, AltDests
from rsyncd_py.roles.delete import (
    DEL_FOR_DIR,
    Deleter,
    del_for_flag,
)
from rsyncd_py.roles.destination import dir_stat, make_path
from rsyncd_py.roles.fuzzy import FuzzyFinder
from rsyncd_py.roles.gen_file import FileRequests
from rsyncd_py.roles.gen_phases import FilesPass
from rsyncd_py.roles.hardlinks import HardLinks, is_hlinked
from rsyncd_py.roles.metadata import quote, report_fs_error, set_file_attrs
from rsyncd_py.roles.transfer import (
    FLAG_DIR_CREATED,
    FLAG_MISSING_DIR,
    Transfer,
)
from rsyncd_py.wire import Log


class Generator:
    """generator.c's statics and functions for one push session."""

    def __init__(self, t: Transfer, deleter: Deleter) -> None:
        self.t = t
        self.deleter = deleter
        self.hlinks = HardLinks(self) if t.opts.preserve_hard_links else None
        self.lists: FileLists[FileEntry] = FileLists(incremental=t.inc_recurse)
        self.files = FileRequests(self)
        self.alt = AltDests(self) if t.basis_dirs else None  # --link/compare/copy-dest
        self.fuzzy = FuzzyFinder(t) if t.opts.fuzzy_basis else None  # -y
        self.phase = 0
        self.redo = False  # recv_generator is handling a redo (csum_length = SUM_LENGTH)
        self._skip_dir: FileEntry | None = None
        self._dry_missing_dir: FileEntry | None = None
        self._parent_dirname: bytes | None = None
        self._dir_names: set[bytes] = set()  # one list: its directories (parent checks)
        if not t.inc_recurse:
            self._dir_names = {e.name for e in t.lists.first.entries if e.active and e.is_dir()}
        itemize_all = t.opts.stdout_format_has_i > 1 or t.name_level >= 2
        self._report_all = itemize_all

    async def generate_files(self) -> None:
        """Rsync generator.c:generate_files (gen_phases.py)."""
        await FilesPass(self).run()

    def count(self, ndx: int, delta: int) -> None:
        """Change the in-flight count of the list holding `ndx` (incremental recursion).

        A request, a deferred or queued hard-link member counts up; a finished transfer
        or a linked member counts down. A list is freed only at 0.
        """
        if self.t.inc_recurse:
            flist = self.lists.list_for(ndx)
            if flist is not None:
                flist.in_progress += delta

    def send_success(self, ndx: int, *, up_to_date: bool) -> None:
        """generator.c return_with_success: tell a --remove-source-files sender it may go.

        Up-to-date items count only for --remove-source-files (1), not for the old
        --remove-sent-files (2); a dry run removes nothing.
        """
        mode = self.t.opts.remove_source_files
        if mode and (mode == 1 or not up_to_date) and not self.t.dry_run:
            self.t.wire.send_msg(MSG_SUCCESS, pack_int(ndx))

    def write_ndx(self, ndx: int) -> None:
        t = self.t
        t.wire.write(t.ndx_out.encode(ndx))

    # --- generator.c recv_generator --------------------------------------------------

    async def recv_generator(self, entry: FileEntry, ndx: int, *, parent_dir: bool = False) -> None:
        """Rsync generator.c:recv_generator: bring one entry up to date or request it.

        `parent_dir`: `entry` is the directory of the list now generated (its index is
        the one before the list); with incremental recursion any other directory is
        only created here (rsync's is_dir < 0).
        """
        t = self.t
        path = t.path_of(entry)
        is_dir = entry.is_dir()
        early_dir = is_dir and t.inc_recurse and not parent_dir

        if self._skip_dir is not None:
            if _is_below(entry, self._skip_dir):
                if is_dir:
                    entry.flags |= FLAG_MISSING_DIR
                return
            self._skip_dir = None

        st: Stat | None
        if t.dry_run > 1 or (
            self._dry_missing_dir is not None and _is_below(entry, self._dry_missing_dir)
        ):
            st = None
        else:
            self._dry_missing_dir = None
            st = None
            if not await self._enter_parent(entry):
                try:
                    st = await t.fs.lstat(path)
                except FsError as exc:
                    report_fs_error(t, exc, f"recv_generator: failed to stat {quote(path)}")
                    return

        opts = t.opts
        if opts.missing_args == 2 and entry.mode == 0:
            # --delete-missing-args: the sender's "missing" entry deletes what is here
            excluded = t.filters is not None and t.filters.excluded(entry.name, False)
            if st is not None and not excluded:
                await self.deleter.delete_item(path, entry.name, st, self.deleter.del_opts())
            return
        if opts.ignore_non_existing > 0 and st is None and not self.redo:
            if early_dir:
                return
            if is_dir:
                self._skip_dir = entry
                entry.flags |= FLAG_MISSING_DIR
            elif self.hlinks is not None and is_hlinked(entry):
                await self.hlinks.skipped(entry, ndx)
            if t.name_level >= 2 or t.opts.verbose >= 2:
                kind = "directory" if is_dir else "file"
                self.info(f'not creating new {kind} "{_s(t.display_name(entry))}"\n')
            return
        if (
            opts.ignore_existing > 0
            and st is not None
            and not self.redo
            and (not is_dir or not st.is_dir())
        ):
            if t.opts.verbose >= 2 and not is_dir:
                self.info(f"{_s(t.display_name(entry))} exists\n")
            if self.hlinks is not None and is_hlinked(entry):
                await self.hlinks.skipped(entry, ndx)
            return

        if early_dir:
            await self._create_dir_early(entry, path, st)
            return
        if is_dir:
            await self._generate_dir(entry, ndx, path, st)
            return
        if not opts.preserve_perms:
            exists = st is not None and not st.is_dir()
            entry.mode = metadata.dest_mode(t, entry.mode, st.mode if st else 0, exists)
        if (
            self.hlinks is not None
            and self.hlinks.not_first(entry)
            and await self.hlinks.check(entry, ndx, path, st)
        ):
            return
        if entry.is_symlink() and opts.preserve_links:
            await self._generate_symlink(entry, ndx, path, st)
            return
        if (opts.preserve_devices and is_device(entry.mode) and not opts.drop_devices) or (
            opts.preserve_specials and is_special(entry.mode) and not opts.drop_devices
        ):
            await self._generate_node(entry, ndx, path, st)
            return
        if not entry.is_file():
            self.info(f'skipping non-regular file "{_s(t.display_name(entry))}"\n')
            return
        await self.files.generate(entry, ndx, path, st)

    async def _enter_parent(self, entry: FileEntry) -> bool:
        """recv_generator's parent-directory step, when the parent changes.

        Each parent must be in the file list, or the sender is lying. With -R and
        --no-implied-dirs the parents are not made from the list, so a missing one is
        made now (make_path); in a dry run the entry is then treated as missing, which
        is the True this returns.
        """
        t = self.t
        if t.local_name is not None:
            return False
        parent = entry.name.rpartition(b"/")[0] or b"."
        if parent == self._parent_dirname:
            return False
        self._parent_dirname = parent
        if parent == b".":
            return False
        if not t.inc_recurse and parent not in self._dir_names:
            base = entry.name.rpartition(b"/")[2]
            raise ProtocolError(
                f"ABORTING due to invalid path from sender: {_s(parent)}/{_s(base)}"
            )
        if t.opts.relative_paths > 0 and not t.opts.implied_dirs:
            path = t.join(parent)
            try:
                missing = await t.fs.lstat(path) is None
            except FsError:
                missing = True
            if missing:
                if t.dry_run:
                    return True
                try:
                    await make_path(t.fs, path, dir_stat(t.umask, t.owner))
                except FsError as exc:
                    report_fs_error(t, exc, f"recv_generator: mkdir {quote(path)} failed")
        return False

    async def _create_dir_early(self, entry: FileEntry, path: bytes, st: Stat | None) -> None:
        """recv_generator for a directory met in its parent's list (incremental).

        A missing one is made now, owner bits only, so the parent's time can be set as
        soon as the parent's list is done; it is handled in full (and shown as new:
        FLAG_DIR_CREATED) right before its own list.
        """
        t = self.t
        if not t.opts.implied_dirs and entry.flags & FLAG_IMPLIED_DIR:
            return
        if not t.opts.preserve_mtimes or t.opts.omit_dir_times:
            return
        if st is not None and (
            st.is_dir() or not await self.deleter.make_room(entry, st, DEL_FOR_DIR)
        ):
            return  # any error is reported when the directory is handled in full
        if not t.dry_run:
            owner_only = replace(entry, mode=(entry.mode & ~0o7777) | (entry.mode & 0o700))
            try:
                await t.fs.mkdir(path, metadata.wanted_stat(t, owner_only, None))
            except FsError:
                return
        entry.flags |= FLAG_DIR_CREATED

    async def _generate_dir(self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None) -> None:
        t = self.t
        if not t.opts.implied_dirs and entry.flags & FLAG_IMPLIED_DIR:
            return
        if st is not None and not st.is_dir():
            if not await self.deleter.make_room(entry, st, DEL_FOR_DIR):
                self._skip_contents(entry)
                return
            st = None
        if t.dry_run and st is None:
            if self._dry_missing_dir is None:
                self._dry_missing_dir = entry
            entry.flags |= FLAG_MISSING_DIR
        real_st = st
        shown_st = None if entry.flags & FLAG_DIR_CREATED else st
        if not t.opts.preserve_perms:
            entry.mode = metadata.dest_mode(t, entry.mode, st.mode if st else 0, st is not None)
        changes = 0 if shown_st is not None else ITEM_LOCAL_CHANGE
        itemizing = True
        if shown_st is None and self.alt is not None:
            found = await self.alt.other(entry, ndx, path)
            itemizing = found != HANDLED  # an exact match in a basis dir shows no line
            if found is not None and found != HANDLED:
                shown_st = found.st  # type: ignore[union-attr]
        if itemizing:
            self.itemize(entry, ndx, shown_st, changes)
        if real_st is None and not t.dry_run:
            try:
                await t.fs.mkdir(path, metadata.wanted_stat(t, entry, None))
            except FsError as exc:
                if exc.errno != 17:  # EEXIST: someone made it meanwhile, fine
                    report_fs_error(t, exc, f"recv_generator: mkdir {quote(path)} failed")
                    self._skip_contents(entry)
                    return
        if entry.mode & 0o700 != 0o700 and not t.dry_run:
            # keep the directory usable until its contents are in; touch_up_dirs sets
            # the exact mode at the end (rsync's dir_tweaking)
            updated = await set_file_attrs(
                t, path, replace(entry, mode=entry.mode | 0o700), real_st
            )
        else:
            updated = await set_file_attrs(t, path, entry, real_st)
        if updated or real_st is None:
            self.name_line(f"{_s(t.display_name(entry))}/\n")
        if (
            t.delete_timing == "during"
            and not t.inc_recurse  # with it, the pass deletes in the directory's own list
            and self.phase == 0
            and not entry.flags & FLAG_MISSING_DIR
            and entry.flags & FLAG_CONTENT_DIR
        ):
            await self.deleter.delete_in_dir(entry)

    def _skip_contents(self, entry: FileEntry) -> None:
        self.t.wire.rprintf(Log.ERROR, "*** Skipping any contents from this failed directory ***\n")
        self._skip_dir = entry
        entry.flags |= FLAG_MISSING_DIR

    async def _generate_symlink(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None
    ) -> None:
        t = self.t
        target = entry.link_target or b""
        if t.opts.safe_symlinks and _unsafe_symlink(target, entry.name):
            if t.name_level >= 1:
                self.info(f'ignoring unsafe symlink "{_s(path)}" -> "{_s(target)}"\n')
            return
        if st is not None and st.is_symlink() and st.link_target == target:
            await set_file_attrs(t, path, entry, st, report=t.attrs_report)
            self.itemize(entry, ndx, st, 0)
            await self.finish_hard_link(entry, ndx, path, st)
            self.send_success(ndx, up_to_date=True)
            return
        shown = st if st is not None and st.is_symlink() else None
        shown = await self._shown_for_new(entry, ndx, path, st, shown)
        if shown is HANDLED:
            return
        if await self._atomic_create(entry, path, st):
            if shown is not _QUIET:
                self.itemize(entry, ndx, shown, ITEM_LOCAL_CHANGE | ITEM_REPORT_CHANGE)
            self.name_line(f"{_s(t.display_name(entry))} -> {_s(target)}\n")
            await self.finish_hard_link(entry, ndx, path, None)
            self.send_success(ndx, up_to_date=False)  # --remove-sent-files removes links

    async def _generate_node(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None
    ) -> None:
        t = self.t
        shown = st
        if st is not None:
            if st.kind != stat_mod.S_IFMT(entry.mode):
                shown = None
            elif not is_device(entry.mode) or st.rdev == metadata.makedev(*entry.rdev):
                await set_file_attrs(t, path, entry, st, report=t.attrs_report)
                self.itemize(entry, ndx, st, 0)
                await self.finish_hard_link(entry, ndx, path, st)
                self.send_success(ndx, up_to_date=True)
                return
        shown = await self._shown_for_new(entry, ndx, path, st, shown)
        if shown is HANDLED:
            return
        if await self._atomic_create(entry, path, st):
            if shown is not _QUIET:
                self.itemize(entry, ndx, shown, ITEM_LOCAL_CHANGE | ITEM_REPORT_CHANGE)
            self.name_line(f"{_s(t.display_name(entry))}\n")
            await self.finish_hard_link(entry, ndx, path, None)
            self.send_success(ndx, up_to_date=True)

    async def _shown_for_new(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None, shown: Stat | None
    ) -> Stat | str | None:
        """try_dests_non for a symlink, device or special the destination lacks.

        Returns what itemize compares the new entry with (a basis directory's match, or
        `shown`), _QUIET (--copy-dest found it exact: create it, no item line), or
        HANDLED (--link-dest linked it, --compare-dest needs none).
        """
        if self.alt is None or st is not None:
            return shown
        found = await self.alt.other(entry, ndx, path)
        if found == HANDLED:
            return _QUIET if self.alt.copy_dest else HANDLED
        return found.st if found is not None else None  # type: ignore[union-attr]

    async def _atomic_create(self, entry: FileEntry, path: bytes, st: Stat | None) -> bool:
        """generator.c atomic_create: make a symlink/device/special, replacing a non-dir."""
        t = self.t
        if st is not None:
            if st.is_dir():
                if not await self.deleter.make_room(entry, st, del_for_flag(entry.mode)):
                    return False
            elif self.deleter.backups.enabled:
                name = t.display_name(entry)
                if not await self.deleter.backups.make(path, name, st, self.deleter, keep=False):
                    return False
        if t.dry_run:
            return True
        wanted = metadata.wanted_stat(t, entry, None)
        try:
            if entry.is_symlink():
                await t.fs.symlink(path, wanted)
            else:
                await t.fs.mknod(path, wanted)
        except FsError as exc:
            what = (
                f'symlink {quote(path)} -> "{_s(entry.link_target or b"")}"'
                if entry.is_symlink()
                else f"mknod {quote(path)}"
            )
            report_fs_error(t, exc, f"{what} failed")
            return False
        await set_file_attrs(t, path, entry, None)
        return True

    # --- generator.c itemize ---------------------------------------------------------

    def itemize(
        self,
        entry: FileEntry,
        ndx: int | None,
        st: Stat | None,
        iflags: int,
        *,
        xname: bytes | None = None,
        basis_type: int = FNAMECMP_FNAME,
    ) -> None:
        """Rsync generator.c:itemize: send the item record if it says anything.

        `xname` (with ITEM_XNAME_FOLLOWS) is the "=> NAME" of a hard link; `basis_type`
        names the basis directory a transfer is diffed against. With -X the request
        for abbreviated xattr values follows the record.
        """
        if basis_type != FNAMECMP_FNAME:
            iflags |= ITEM_BASIS_TYPE_FOLLOWS
        t = self.t
        if st is not None:
            iflags = metadata.report_flags(t, entry, st, iflags, xname)
        else:
            iflags |= ITEM_IS_NEW
        iflags, xattr_request = t.attrs.itemize(entry, st, iflags)
        iflags &= 0xFFFF
        significant = iflags & (SIGNIFICANT_ITEM_FLAGS | ITEM_REPORT_XATTR)
        if not (significant or self._report_all or ndx is None or xname):
            return
        if t.protocol >= 29:
            record = pack_item(t.ndx_out, ndx, iflags, basis_type=basis_type, xname=xname)
            t.wire.write(record + xattr_request)

    async def finish_hard_link(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None
    ) -> None:
        """hlink.c finish_hard_link, if `entry` is a member of a hard-link group."""
        if self.hlinks is not None and is_hlinked(entry):
            await self.hlinks.finish(entry, ndx, path, st)

    def info(self, text: str) -> None:
        self.t.wire.rprintf(Log.INFO, text)

    def name_line(self, text: str) -> None:
        """rprintf(code, ...) at -v: FINFO below protocol 29, else FLOG (generate_files)."""
        if self.t.protocol < 29 and self.t.name_level >= 1:
            self.info(text)


_QUIET = "quiet"  # _shown_for_new: create the entry without an item line


def _is_below(entry: FileEntry, subtree: FileEntry) -> bool:
    """Whether `entry` is inside directory `subtree` (generator.c is_below)."""
    if subtree.name == b".":
        return entry.name != b"."
    return entry.name.startswith(subtree.name + b"/")


def _unsafe_symlink(target: bytes, name: bytes) -> bool:
    """Whether `target`, seen from `name`, leaves the transfer (util1.c unsafe_symlink)."""
    if not target or target.startswith(b"/"):
        return True
    depth = name.count(b"/")
    for part in target.split(b"/"):
        if part == b"..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in (b"", b"."):
            depth += 1
    return False


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
