"""The generator's pass over the file lists, and rsync's phase protocol.

Mirrors generator.c generate_files, check_for_finished_files and touch_up_dirs; the
per-entry work is `Generator.recv_generator` (generator.py).

Theory of operation. Phase 0 asks for every entry. With one file list that is a walk in
index order followed by F. With incremental recursion (`_generate_lists`) the lists
come in while the generator works -- the receiver task reads them from the sender's
stream and says so (ListsChanged) -- and each is generated as soon as it is the next:
first its directory (the index before the list, now handled in full: itemized, its
attributes set, --delete-during run in it), then its entries (a directory among them
is only created, so its parent's time can be fixed early). A list is freed -- one
NDX_DONE, its directory's time and mode touched up, its hard-link chains dropped --
once the generator has moved past it and none of its transfers is in flight or waiting
for a redo; the NDX_DONE of the last list is the one that ends phase 0 for the sender.
Freeing lists promptly is what lets a real sender go on: it keeps only about a thousand
files of lists ahead of our requests (PR #5677 in oferchen/rsync: a receiver that waits
for every list deadlocks there).

Receiver events (`Transfer.to_generator`) are absorbed whenever the generator looks:
"file done" is acted on at once (the list's in-flight count, hard-link leaders), redo
requests queue in `redo` until the generator may act on them (after each list, or in
phase 1 with one list), phase ends are counted. Before waiting for an event the
generator flushes what it has written: the sender must see it first.

Phase bookkeeping (F, P1, D, X, G are our NDX_DONEs):

  phase 0  requests for every entry ... F (one per list)   wait for the 1st PhaseDone
  phase 1  redo requests ... P1, then D (protocol 29+, no --delay-updates), then
           del-stats + X (protocol 31+, early delete)      wait for the 2nd PhaseDone
  phase 2  (29+) the late D / X when they were not sent early;  wait for the 3rd
  after    --delete-after/--delete-delay, late del-stats + X (31+);  wait for the 4th
  end      directory times touched up, then G (the goodbye)
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FsError
from rsyncd_py.protocol.constants import IOERR_DEL_LIMIT, NDX_DEL_STATS, NDX_DONE
from rsyncd_py.protocol.errors import ProtocolError
from rsyncd_py.protocol.flist import FLAG_CONTENT_DIR, FLAG_IMPLIED_DIR, FileEntry
from rsyncd_py.protocol.flist_chain import FileList
from rsyncd_py.roles import metadata
from rsyncd_py.roles.hardlinks import is_hlinked
from rsyncd_py.roles.metadata import quote, report_fs_error
from rsyncd_py.roles.transfer import (
    FLAG_MISSING_DIR,
    Event,
    Finished,
    ListsChanged,
    PhaseDone,
    Redo,
)
from rsyncd_py.wire import Log

if TYPE_CHECKING:
    from rsyncd_py.roles.generator import Generator

MIN_FILECNT_LOOKAHEAD = 1000  # rsync.h: files of lists a sender keeps ahead
_YIELD_EVERY = 64  # entries between cooperative yields to the receiver task


class FilesPass:
    """generator.c generate_files for one push session (see the module docstring)."""

    def __init__(self, generator: Generator) -> None:
        self.g = generator
        self.t = generator.t
        self.redo: deque[int] = deque()
        self._todo: deque[FileList[FileEntry]] = deque()  # lists not generated yet
        self.cur: FileList[FileEntry] | None = None  # the list being generated
        self._phase_ends = 0  # PhaseDone events absorbed
        self._phase_ends_used = 0
        self._delay_dirs: list[FileEntry] = []  # --delete-delay: dirs touched up at the end

    # --- generator.c generate_files --------------------------------------------------

    async def run(self) -> None:
        """Rsync generator.c:generate_files."""
        g, t = self.g, self.t
        if t.opts.verbose >= 2:  # DEBUG_GTE(FLIST, 1), which -vv turns on
            g.info(
                "delta-transmission disabled for local transfer or --whole-file\n"
                if t.whole_file
                else "delta-transmission enabled\n"
            )
        self._ingest()
        timing = t.delete_timing
        if timing == "before" and t.local_name is None and t.lists.file_total:
            await g.deleter.delete_pass()
        if t.inc_recurse:
            await self._generate_lists()
        else:
            self.cur = self._todo.popleft()
            await self._generate_entries(self.cur)
            g.write_ndx(NDX_DONE)  # F: the file list is done
        g.phase = 1
        await self._serve_receiver(handle_redo=True)  # until the receiver ends phase 0

        g.phase = 2
        delay_updates = bool(t.opts.delay_updates)
        early_delete_done = timing not in ("delay", "after")
        # rsync 3.2.7 sends the deletion counts only for --stats (3.4+ whenever deleting);
        # clients accept them either way, and this keeps us byte-identical to 3.2.7
        deleting = bool(t.opts.delete_mode or t.opts.force_delete) and bool(t.opts.do_stats)
        g.write_ndx(NDX_DONE)  # P1: the redo phase is done
        if t.protocol >= 29 and not delay_updates:
            g.write_ndx(NDX_DONE)  # D
        if t.protocol >= 31 and early_delete_done:
            if deleting:
                self._write_del_stats()
            if not delay_updates:
                g.write_ndx(NDX_DONE)  # X
        await self._serve_receiver(handle_redo=False)  # until the receiver ends phase 1

        if t.protocol >= 29:
            g.phase = 3
            if delay_updates:
                g.write_ndx(NDX_DONE)  # the late D
                if t.protocol >= 31 and early_delete_done:
                    g.write_ndx(NDX_DONE)  # the late X
            await self._serve_receiver(handle_redo=False)  # the delay-updates phase

        if timing == "delay" and t.inc_recurse:
            await g.deleter.delete_delayed()
        elif timing in ("delay", "after") and t.local_name is None and t.lists.file_total:
            await g.deleter.delete_pass()
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
                g.write_ndx(NDX_DONE)  # the late-delete X
            await self._serve_receiver(handle_redo=False)  # the receiver saw the goodbye

        if not t.inc_recurse:
            await self._touch_up_dirs(self.g.lists.first.entries)
        elif timing == "delay":
            await self._touch_up_dirs(self._delay_dirs)
        g.write_ndx(NDX_DONE)  # G: the final goodbye
        await t.wire.flush()

    async def _generate_lists(self) -> None:
        """generate_files' loop over incremental lists, as they arrive."""
        g, t = self.g, self.t
        flist: FileList[FileEntry] | None = self._todo.popleft()  # the first list is in
        while flist is not None:
            self.cur = flist
            if g.hlinks is not None:
                # a hard-link group may reach into lists still to come: have some
                while not t.lists.eof and g.lists.file_total < MIN_FILECNT_LOOKAHEAD // 2:
                    await self._wait()
            if flist.parent is not None:
                await self._generate_parent(flist)
            await self._generate_entries(flist)
            flist = await self._next_list()
        self.cur = None
        await self._check_for_finished_files(redo=True)
        g.deleter.leave_filter_dirs()

    async def _next_list(self) -> FileList[FileEntry] | None:
        """The next list to generate, waiting for it; None after NDX_FLIST_EOF.

        Meanwhile the lists before the current one are freed as they finish.
        """
        while True:
            self._ingest()
            await self._check_for_finished_files(redo=True)
            if self._todo:
                return self._todo.popleft()
            if self.t.lists.eof and not self.t.incoming.unseen:
                return None
            await self._wait()

    async def _generate_parent(self, flist: FileList[FileEntry]) -> None:
        """The list's directory, in full, and --delete-during in it."""
        g, t = self.g, self.t
        parent = flist.parent
        assert parent is not None
        await g.recv_generator(parent, flist.ndx_start - 1, parent_dir=True)
        timing = t.delete_timing
        if (
            timing in ("during", "delay")
            and t.dry_run < 2
            and not parent.flags & FLAG_MISSING_DIR
            and parent.flags & FLAG_CONTENT_DIR
        ):
            names = {
                e.name.rpartition(b"/")[2] for e in flist.entries if e.active and e.name != b"."
            }
            await g.deleter.delete_in_dir(parent, names, delay=timing == "delay")

    async def _generate_entries(self, flist: FileList[FileEntry]) -> None:
        """recv_generator for every active entry of a list, in index order."""
        g, t = self.g, self.t
        queue = t.to_generator
        for count, (ndx, entry) in enumerate(flist.indexed(), 1):
            if not entry.active:
                continue
            await g.recv_generator(entry, ndx)
            if not queue.empty():
                await self._absorb_waiting()
            if count % _YIELD_EVERY == 0:
                await t.wire.drain()
                await asyncio.sleep(0)

    # --- generator.c check_for_finished_files and the receiver's messages ---------------

    async def _check_for_finished_files(self, *, redo: bool) -> None:
        """Absorb the receiver's news, send queued redos (if `redo`), free done lists."""
        g, t = self.g, self.t
        while True:
            await self._absorb_waiting()
            if redo and self.redo:
                ndx = self.redo.popleft()
                flist = g.lists.list_for(ndx)
                entry = flist.get(ndx) if flist is not None else None
                if flist is None or entry is None:
                    raise ProtocolError(f"redo of an index not in the file lists: {ndx}")
                if t.inc_recurse:
                    flist.to_redo -= 1
                g.redo = True
                try:
                    await g.recv_generator(entry, ndx)
                finally:
                    g.redo = False
                continue
            if not t.inc_recurse or not len(g.lists) or self.cur is g.lists.first:
                return
            first = g.lists.first
            if first.in_progress or first.to_redo:
                return
            await self._free_first()

    async def _free_first(self) -> None:
        """One finished list: its NDX_DONE, its directory touched up, forgotten."""
        g, t = self.g, self.t
        g.write_ndx(NDX_DONE)
        flist = g.lists.pop_first()
        if not t.lists.eof and self._files_ahead() < MIN_FILECNT_LOOKAHEAD // 2:
            await t.wire.flush()  # the sender waits for it to send more lists
        if g.hlinks is not None:
            g.hlinks.forget(flist)
        if flist.parent is not None:
            if t.delete_timing == "delay":
                self._delay_dirs.append(flist.parent)
            else:
                await self._touch_up_dirs((flist.parent,))

    def _files_ahead(self) -> int:
        """Entries in the lists from the current one on (the sender's look-ahead)."""
        ahead = 0
        for flist in reversed(list(self.g.lists)):
            ahead += flist.used
            if flist is self.cur:
                break
        return ahead

    def _ingest(self) -> None:
        """Pick up the lists the receiver task has read (flist forwarding)."""
        g = self.g
        unseen = self.t.incoming.unseen
        while unseen:
            flist = unseen.popleft()
            g.lists.append(flist)
            self._todo.append(flist)
            if g.hlinks is not None:
                g.hlinks.match_list(flist)

    async def _absorb_waiting(self) -> None:
        queue = self.t.to_generator
        while not queue.empty():
            await self._absorb(queue.get_nowait())

    async def _wait(self) -> None:
        """generator.c wait_for_receiver: flush, then take the receiver's next message."""
        t = self.t
        if t.to_generator.empty():
            await t.wire.flush()  # the sender must see our requests before we wait
        await self._absorb(await t.to_generator.get())

    async def _absorb(self, event: Event) -> None:
        """io.c got_flist_entry_status and read_msg_fd for one receiver message."""
        g, t = self.g, self.t
        if isinstance(event, ListsChanged):
            self._ingest()
        elif isinstance(event, PhaseDone):
            self._phase_ends += 1
        elif isinstance(event, Redo):
            if t.inc_recurse:
                flist = g.lists.list_for(event.ndx)
                if flist is not None:
                    flist.in_progress -= 1
                    flist.to_redo += 1
            self.redo.append(event.ndx)
        elif isinstance(event, Finished):
            g.count(event.ndx, -1)
            entry = g.lists.lookup(event.ndx)
            if g.hlinks is not None and entry is not None and is_hlinked(entry):
                await g.hlinks.finished(event.ndx, event.ok)

    async def _serve_receiver(self, *, handle_redo: bool) -> None:
        """Wait for the receiver's next PhaseDone, sending redo requests meanwhile."""
        while True:
            await self._check_for_finished_files(redo=handle_redo)
            if self._phase_ends > self._phase_ends_used:
                self._phase_ends_used += 1
                return
            await self._wait()

    def _write_del_stats(self) -> None:
        """main.c write_del_stats."""
        t = self.t
        t.wire.write(t.ndx_out.encode(NDX_DEL_STATS) + t.deleted.pack())

    # --- generator.c touch_up_dirs ---------------------------------------------------

    async def _touch_up_dirs(self, entries: tuple[FileEntry, ...] | list[FileEntry]) -> None:
        """Rsync generator.c:touch_up_dirs: final directory modes and times.

        Creating entries inside a directory changes its mtime, and a directory without
        owner rwx was kept writable until its contents were in; both are fixed last
        (with incremental recursion: when the directory's list is freed).
        """
        t = self.t
        if t.dry_run or t.local_name is not None:
            return
        for count, entry in enumerate(entries, 1):
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
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
