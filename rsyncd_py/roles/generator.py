"""The generator half of a push: decide, per file-list entry, what the sender must send.

Mirrors generator.c generate_files / recv_generator / itemize. For every active entry in
index order the generator looks at what the destination holds, creates directories,
symlinks, devices and specials itself, fixes attributes of what is already up to date,
reports each change as an item record, and for a regular file that differs asks the
sender for it: the index, ITEM_TRANSFER flags and the block sums of the existing file
(the basis), so unchanged blocks travel as references. Then it runs rsync's phase
protocol with the receiver task (see `generate_files`).

Phase bookkeeping (non-incremental list; F, P1, D, X, G are our NDX_DONEs):

  phase 0  requests for every entry ... F         wait for the receiver's 1st PhaseDone
  phase 1  redo requests (from Redo messages) ... P1, then D (protocol 29+, no
           --delay-updates), then del-stats + X (protocol 31+, early delete)
                                                  wait for the 2nd PhaseDone
  phase 2  (29+) the late D / X when they were not sent early;  wait for the 3rd
  after    --delete-after, late del-stats + X (31+);  wait for the 4th (31+)
  end      directory times touched up, then G (the goodbye)
"""

from __future__ import annotations

import asyncio
import stat as stat_mod
from collections import deque
from dataclasses import replace

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import (
    IOERR_DEL_LIMIT,
    ITEM_IS_NEW,
    ITEM_LOCAL_CHANGE,
    ITEM_REPORT_CHANGE,
    ITEM_REPORT_XATTR,
    MSG_SUCCESS,
    NDX_DEL_STATS,
    NDX_DONE,
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
from rsyncd_py.protocol.ints import pack_int
from rsyncd_py.protocol.itemize import pack_item
from rsyncd_py.roles import metadata
from rsyncd_py.roles.delete import (
    DEL_FOR_DIR,
    Deleter,
    del_for_flag,
)
from rsyncd_py.roles.destination import dir_stat, make_path
from rsyncd_py.roles.gen_file import FileRequests
from rsyncd_py.roles.hardlinks import HardLinks, is_hlinked
from rsyncd_py.roles.metadata import quote, report_fs_error, set_file_attrs
from rsyncd_py.roles.transfer import (
    FLAG_DIR_CREATED,
    FLAG_MISSING_DIR,
    Finished,
    PhaseDone,
    Redo,
    Transfer,
)
from rsyncd_py.wire import Log

_YIELD_EVERY = 64  # entries between cooperative yields to the receiver task


class Generator:
    """generator.c's statics and functions for one push session."""

    def __init__(self, t: Transfer, deleter: Deleter) -> None:
        self.t = t
        self.deleter = deleter
        self.hlinks = HardLinks(self) if t.opts.preserve_hard_links else None
        # receiver events that arrived while phase 0 was still generating
        self._pending: deque[Redo | PhaseDone] = deque()
        self.files = FileRequests(self)
        self.phase = 0
        self.redo = False  # recv_generator is handling a redo (csum_length = SUM_LENGTH)
        self._skip_dir: FileEntry | None = None
        self._dry_missing_dir: FileEntry | None = None
        self._parent_dirname: bytes | None = None
        self._dir_names = {e.name for e in t.entries if e.active and e.is_dir()}
        itemize_all = t.opts.stdout_format_has_i > 1 or t.name_level >= 2
        self._report_all = itemize_all

    # --- generator.c generate_files --------------------------------------------------

    async def generate_files(self) -> None:
        """Rsync generator.c:generate_files, for a non-incremental file list."""
        t = self.t
        if t.opts.verbose >= 2:  # DEBUG_GTE(FLIST, 1), which -vv turns on
            self.info(
                "delta-transmission disabled for local transfer or --whole-file\n"
                if t.whole_file
                else "delta-transmission enabled\n"
            )
        timing = t.delete_timing
        if timing == "before" and t.local_name is None and t.entries:
            await self.deleter.delete_pass()
        for ndx, entry in enumerate(t.entries):
            if not entry.active:
                continue
            await self.recv_generator(entry, ndx)
            if self.hlinks is not None:
                await self._check_for_finished_files()
            if ndx % _YIELD_EVERY == _YIELD_EVERY - 1:
                await t.wire.drain()
                await asyncio.sleep(0)
        self.write_ndx(NDX_DONE)  # F: the file list is done
        self.phase = 1
        await self._serve_receiver(handle_redo=True)  # until the receiver ends phase 0

        self.phase = 2
        delay_updates = bool(t.opts.delay_updates)
        early_delete_done = timing not in ("delay", "after")
        # rsync 3.2.7 sends the deletion counts only for --stats (3.4+ whenever deleting);
        # clients accept them either way, and this keeps us byte-identical to 3.2.7
        deleting = bool(t.opts.delete_mode or t.opts.force_delete) and bool(t.opts.do_stats)
        self.write_ndx(NDX_DONE)  # P1: the redo phase is done
        if t.protocol >= 29 and not delay_updates:
            self.write_ndx(NDX_DONE)  # D
        if t.protocol >= 31 and early_delete_done:
            if deleting:
                self._write_del_stats()
            if not delay_updates:
                self.write_ndx(NDX_DONE)  # X
        await self._serve_receiver(handle_redo=False)  # until the receiver ends phase 1

        if t.protocol >= 29:
            self.phase = 3
            if delay_updates:
                self.write_ndx(NDX_DONE)  # the late D
                if t.protocol >= 31 and early_delete_done:
                    self.write_ndx(NDX_DONE)  # the late X
            await self._serve_receiver(handle_redo=False)  # the delay-updates phase

        if timing in ("delay", "after") and t.local_name is None and t.entries:
            await self.deleter.delete_pass()
        if t.opts.max_delete >= 0 and t.skipped_deletes:
            t.wire.rprintf(
                Log.WARNING,
                f"Deletions stopped due to --max-delete limit ({t.skipped_deletes} skipped)\n",
            )
            t.io_error |= IOERR_DEL_LIMIT
        if t.protocol >= 31:
            if not early_delete_done:
                if t.opts.do_stats:
                    self._write_del_stats()
                self.write_ndx(NDX_DONE)  # the late-delete X
            await self._serve_receiver(handle_redo=False)  # the receiver saw the goodbye

        await self.touch_up_dirs()
        self.write_ndx(NDX_DONE)  # G: the final goodbye
        await t.wire.flush()

    async def _check_for_finished_files(self) -> None:
        """generator.c check_for_finished_files during phase 0: link finished leaders.

        Only hard-link completions are handled now; redo requests and phase ends wait
        for `_serve_receiver`, as rsync leaves them queued until the pass is over.
        """
        queue = self.t.to_generator
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, Finished):
                assert self.hlinks is not None
                await self.hlinks.finished(event.ndx, event.ok)
            else:
                self._pending.append(event)

    async def _serve_receiver(self, *, handle_redo: bool) -> None:
        """Wait for the receiver's next PhaseDone, sending redo requests meanwhile."""
        t = self.t
        while True:
            if self._pending:
                event: Redo | PhaseDone | Finished = self._pending.popleft()
            else:
                if t.to_generator.empty():
                    await t.wire.flush()  # the sender must see our requests before we wait
                event = await t.to_generator.get()
            if isinstance(event, PhaseDone):
                return
            if isinstance(event, Finished):
                if self.hlinks is not None:
                    await self.hlinks.finished(event.ndx, event.ok)
                continue
            if isinstance(event, Redo) and handle_redo:
                entry = t.entries[event.ndx]
                self.redo = True
                try:
                    await self.recv_generator(entry, event.ndx)
                finally:
                    self.redo = False

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

    def _write_del_stats(self) -> None:
        """main.c write_del_stats."""
        t = self.t
        t.wire.write(t.ndx_out.encode(NDX_DEL_STATS) + t.deleted.pack())

    # --- generator.c recv_generator --------------------------------------------------

    async def recv_generator(self, entry: FileEntry, ndx: int) -> None:
        """Rsync generator.c:recv_generator: bring one entry up to date or request it."""
        t = self.t
        path = t.path_of(entry)
        is_dir = entry.is_dir()

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
        if opts.ignore_non_existing > 0 and st is None and not self.redo:
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
        if parent not in self._dir_names:
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
        self.itemize(entry, ndx, shown_st, 0 if shown_st is not None else ITEM_LOCAL_CHANGE)
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
            await set_file_attrs(t, path, replace(entry, mode=entry.mode | 0o700), real_st)
        else:
            await set_file_attrs(t, path, entry, real_st)
        if (
            t.delete_timing == "during"
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
            await set_file_attrs(t, path, entry, st, report=True)
            self.itemize(entry, ndx, st, 0)
            await self.finish_hard_link(entry, ndx, path, st)
            self.send_success(ndx, up_to_date=True)
            return
        if await self._atomic_create(entry, path, st):
            self.itemize(
                entry,
                ndx,
                st if st is not None and st.is_symlink() else None,
                ITEM_LOCAL_CHANGE | ITEM_REPORT_CHANGE,
            )
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
                await set_file_attrs(t, path, entry, st, report=True)
                self.itemize(entry, ndx, st, 0)
                await self.finish_hard_link(entry, ndx, path, st)
                self.send_success(ndx, up_to_date=True)
                return
        if await self._atomic_create(entry, path, st):
            self.itemize(entry, ndx, shown, ITEM_LOCAL_CHANGE | ITEM_REPORT_CHANGE)
            await self.finish_hard_link(entry, ndx, path, None)
            self.send_success(ndx, up_to_date=True)

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
    ) -> None:
        """Rsync generator.c:itemize: send the item record if it says anything.

        `xname` (with ITEM_XNAME_FOLLOWS) is the "=> NAME" of a hard link. With -X the
        request for abbreviated xattr values follows the record.
        """
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
            t.wire.write(pack_item(t.ndx_out, ndx, iflags, xname=xname) + xattr_request)

    async def finish_hard_link(
        self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None
    ) -> None:
        """hlink.c finish_hard_link, if `entry` is a member of a hard-link group."""
        if self.hlinks is not None and is_hlinked(entry):
            await self.hlinks.finish(entry, ndx, path, st)

    # --- generator.c touch_up_dirs ---------------------------------------------------

    async def touch_up_dirs(self) -> None:
        """Rsync generator.c:touch_up_dirs: final directory modes and times.

        Creating entries inside a directory changes its mtime, and a directory without
        owner rwx was kept writable until its contents were in; both are fixed last.
        """
        t = self.t
        if t.dry_run or t.local_name is not None:
            return
        for ndx, entry in enumerate(t.entries):
            if not entry.active or not entry.is_dir() or entry.flags & FLAG_MISSING_DIR:
                continue
            if not t.opts.implied_dirs and entry.flags & FLAG_IMPLIED_DIR:
                continue
            path = t.path_of(entry)
            try:
                st = await t.fs.lstat(path)
            except FsError:
                continue
            if st is None or not st.is_dir():
                continue
            if metadata.attrs_differ(t, entry, st):
                try:
                    await t.fs.set_stat(path, metadata.updated_stat(t, entry, st))
                except FsError as exc:
                    report_fs_error(t, exc, f"failed to set times on {quote(path)}")
            if ndx % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def info(self, text: str) -> None:
        self.t.wire.rprintf(Log.INFO, text)


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
