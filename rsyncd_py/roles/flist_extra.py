"""Incremental file lists on the sending side (flist.c send_extra_file_list and helpers).

Theory of operation. With CF_INC_RECURSE the first list holds only the top level: a
"dir/" argument's "." and its direct contents, a "dir" argument's "dir" alone, and with
-R only the first component of each name, flagged implied, the rest of the name waiting
in that directory (`SendEntry.relnames`; flist.c send_implied_dirs). Every directory
then gets a list of its own -- its contents, then its waiting -R names (send1extra) --
headed by `NDX_FLIST_OFFSET - dir_ndx`, in depth-first order of the sorted lists, where
directories are numbered as each list's directories come in sorted order (rsync's
dir_flist; the receiver numbers them alike). NDX_FLIST_EOF follows the last.

The lists go out interleaved with the transfer, about MIN_FILECNT_LOOKAHEAD files ahead
of the generator: `look_ahead` (rsync's file_total - file_old_total) counts the entries
of the lists after the one the generator's latest record was in (`note_record`); each
list an NDX_DONE frees (`free_first`) moves that on. While the sender would wait for the
client anyway, `send_while_idle` sends more, up to MAX_FILECNT_LOOKAHEAD files. The
directories still to list wait on a stack of sibling queues, one per depth (rsync links
them into a tree), so memory follows the directories in flight, not the tree; per-
directory filter files follow the walk by depth (exclude.c change_local_filter_dir).

State: `lists` (sent, not yet freed), `cur`, `old_total`, the stack, `dir_count`, `eof`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from rsyncd_py.fs.base import FsError
from rsyncd_py.protocol.constants import (
    MSG_IO_ERROR,
    NDX_FLIST_EOF,
    NDX_FLIST_OFFSET,
)
from rsyncd_py.protocol.flist import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FLAG_TOP_DIR,
    FlistEncoder,
)
from rsyncd_py.protocol.flist_chain import FileList, FileLists
from rsyncd_py.protocol.flist_sort import entry_key
from rsyncd_py.protocol.ints import pack_int
from rsyncd_py.protocol.ndx import NdxEncoder
from rsyncd_py.roles.flist_build import MISSING, FileListBuilder, SendEntry
from rsyncd_py.roles.source_args import NameType
from rsyncd_py.wire import Wire

MIN_FILECNT_LOOKAHEAD = 1000  # rsync.h
MAX_FILECNT_LOOKAHEAD = 10000

# a directory waiting for its list: (dir_ndx, entry, duplicate of the one before it)
PendingDir = tuple[int, SendEntry, bool]


class IncrementalBuilder(FileListBuilder):
    """FileListBuilder with FLAG_DIVERT_DIRS: directories are listed later, one by one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.divert_dirs = True
        self._filter_depths: list[int] = []  # depth of each directory entered for filters
        self._top_filters = False  # a dot-dir argument's filters are in (send_dir_depth 0)
        self._relname_dir: tuple[bytes, SendEntry | None] | None = None  # lastpath_struct

    def take_entries(self) -> list[SendEntry]:
        """The entries made since the last call (one list's, in transmission order)."""
        entries, self.entries = self.entries, []
        return entries

    # --- the first list ---------------------------------------------------------------

    async def _send_parents(self, name: bytes, name_type: NameType, st: object) -> bool:
        """send_file_list with -R: only the first component goes now, implied."""
        slash = name.find(b"/", 1)
        if slash < 0:
            return False
        limit, waits = slash, True
        if slash == 1 and name.startswith(b"."):
            deeper = name.find(b"/", slash + 1)
            if deeper >= 0:
                limit = deeper
            else:
                waits = False
        missing = st is MISSING
        await self._send_implied(name, self._fs_path(name), (0, limit), name_type, missing)
        return waits

    async def _send_contents(
        self, name: bytes, path: bytes, name_type: NameType, flags: int
    ) -> None:
        """A dot-dir argument's direct contents; any other directory waits for its list."""
        if name_type is not NameType.DOTDIR:
            return
        if not self._top_filters:
            self._top_filters = True
            await self.filter_dir(name, path, 0)
        await self._send_directory(name, path, flags)

    async def _send_implied(
        self,
        fname: bytes,
        fpath: bytes,
        span: tuple[int, int],
        name_type: NameType,
        missing: bool,
    ) -> None:
        """flist.c send_implied_dirs with inc_recurse (one -R name, or its rest).

        The directories of `fname` from `span`'s start up to its limit go out (implied,
        unfiltered), and the rest of the name is left in the last of them for its own
        list. `fpath` is `fname`'s path in the file system.
        """
        start, limit = span
        tail = len(fname) - limit
        dir_path = fpath[: len(fpath) - tail]
        if self._relname_dir is None or self._relname_dir[0] != dir_path:
            pos = fname.find(b"/", start + 1)
            while 0 <= pos < limit:
                await self._send_implied_one(fname[:pos], fpath[: len(fpath) - (len(fname) - pos)])
                pos = fname.find(b"/", pos + 1)
            sent = await self._send_implied_one(fname[:limit], dir_path)
            holder = sent if sent is not None and sent.st.is_dir() else None
            self._relname_dir = (dir_path, holder)
        holder = self._relname_dir[1]
        if holder is None:
            return  # the directory vanished
        if holder.relnames is None:
            holder.relnames = []
        holder.relnames.append((fname[limit + 1 :], name_type, missing))

    async def _send_implied_one(self, name: bytes, path: bytes) -> SendEntry | None:
        try:
            st = await self.fs.lstat(path)
        except FsError:
            return None
        if st is None:
            return None
        return await self._send_file_name(name, path, st, FLAG_IMPLIED_DIR, filtered=False)

    # --- flist.c send1extra -------------------------------------------------------------

    async def send_dir_list(self, sent: SendEntry, depth: int) -> None:
        """Rsync flist.c:send1extra: a directory's contents, then its waiting -R names."""
        name, path = sent.entry.name, sent.path
        await self.filter_dir(name, path, depth)
        flags = FLAG_CONTENT_DIR
        if sent.entry.flags & FLAG_CONTENT_DIR:
            await self._send_directory(name, path, flags)
        relnames, sent.relnames = sent.relnames, None
        for rel, name_type, missing in relnames or ():
            full = name + b"/" + rel
            full_path = path + b"/" + rel if path else rel
            slash = rel.find(b"/")
            if slash >= 0:
                start = len(name) + 1
                span = (start, start + slash)
                await self._send_implied(full, full_path, span, name_type, missing)
                continue
            if missing:
                st = MISSING
            else:
                if name_type is not NameType.NORMAL:
                    with contextlib.suppress(FsError):  # link_stat follows to a directory
                        full_path = await self._follow_dirs(full_path)
                found = await self._link_stat(full_path)
                if found is None:
                    continue
                st = found
            await self._send_file_name(full, full_path, st, FLAG_TOP_DIR | flags, filtered=True)

    async def filter_dir(self, name: bytes, path: bytes, depth: int) -> None:
        """exclude.c change_local_filter_dir: the merge files of `name` at `depth`."""
        if self.filters is None:
            return
        while self._filter_depths and self._filter_depths[-1] >= depth:
            self._filter_depths.pop()
            self.filters.leave_dir(name)  # LIFO: the name is not looked at
        if await self._enter_dir(name, path):
            self._filter_depths.append(depth)

    def leave_filter_dirs(self) -> None:
        """change_local_filter_dir(NULL): every directory left."""
        while self._filter_depths and self.filters is not None:
            self._filter_depths.pop()
            self.filters.leave_dir(b"")


class ExtraLists:
    """The sender's incremental lists for one session (see the module docstring)."""

    def __init__(
        self,
        wire: Wire,
        builder: IncrementalBuilder,
        encoder: FlistEncoder,
        ndx_out: NdxEncoder,
        *,
        safe_flist: bool,
        ignore_errors: bool,
    ) -> None:
        self.wire = wire
        self.builder = builder
        self.encoder = encoder
        self.ndx_out = ndx_out
        self.protocol = encoder.options.protocol
        self.safe_flist = safe_flist
        self.ignore_errors = ignore_errors
        self.lists: FileLists[SendEntry] = FileLists(incremental=True)
        self.cur: FileList[SendEntry] | None = None  # the list of the latest record
        self.old_total = 0  # flist.c file_old_total
        self.dir_count = 0  # directories numbered so far (dir_flist->used)
        self.eof = False
        self._stack: list[deque[PendingDir]] = []

    @property
    def look_ahead(self) -> int:
        """Entries of the lists after the generator's current one."""
        return self.lists.file_total - self.old_total

    def add_first(self, entries: list[SendEntry]) -> FileList[SendEntry]:
        """send_file_list's end: the first list sorted, its directories queued."""
        ordered = self._sorted(entries)
        flist = self.lists.add(ordered)
        self.cur = flist
        self.old_total = flist.used
        dirs = self._number_dirs(ordered)
        if dirs and ordered[0].entry.name.rpartition(b"/")[2] == b".":
            flist.parent, flist.parent_ndx = dirs[0][1], dirs[0][0]
        self._queue_children(dirs)
        return flist

    async def start(self) -> None:
        """After the first list: NDX_FLIST_EOF at once, or one more list for a lone entry."""
        if not self._pending():
            self._end()
        elif self.lists.file_total == 1:
            await self.send(1)  # the receiver tells a one-file transfer from a directory

    async def send(self, at_least: int) -> None:
        """Rsync flist.c:send_extra_file_list: lists until `at_least` files are ahead.

        A negative `at_least` asks for at least one more file than now.
        """
        if self.eof:
            return
        if at_least < 0:
            at_least = self.look_ahead + 1
        save_io_error = self.builder.io_error
        while self.look_ahead < at_least and not self.eof:
            await self._send_one()
        io_error = self.builder.io_error
        if io_error != save_io_error and self.protocol == 30 and not self.ignore_errors:
            self.wire.send_msg(MSG_IO_ERROR, pack_int(io_error))

    async def send_while_idle(self) -> None:
        """What rsync's I/O loop does while the sender waits: more lists, up to MAX."""
        wire = self.wire
        while not self.eof and self.look_ahead < MAX_FILECNT_LOOKAHEAD and not wire.buffered:
            await self.send(-1)
            await wire.flush()
            await asyncio.sleep(0)  # let the reader task notice the client's next record

    def note_record(self, flist: FileList[SendEntry]) -> None:
        """rsync.c read_ndx_and_attrs: a record from another list moves `cur` there."""
        if flist is self.cur:
            return
        self.cur = flist
        total = 0
        for each in self.lists:
            total += each.used
            if each is flist:
                break
        self.old_total = total

    def free_first(self) -> bool:
        """The generator's NDX_DONE frees the oldest list; True if lists remain."""
        flist = self.lists.first
        self.old_total -= flist.used
        self.lists.pop_first()
        if not len(self.lists):
            self.cur = None
            return False
        if flist is self.cur:
            self.cur = self.lists.first
        if self.lists.first is self.cur:
            assert self.cur is not None
            self.old_total = self.cur.used
        return True

    # --- one list -----------------------------------------------------------------------

    async def _send_one(self) -> None:
        """The next directory's list (with any duplicates of it), then maybe the EOF."""
        depth = len(self._stack)
        queue = self._stack[-1]
        group = [queue.popleft()]
        while queue and queue[0][2]:
            group.append(queue.popleft())
        dir_ndx, first, _ = group[0]
        self.wire.write(self.ndx_out.encode(NDX_FLIST_OFFSET - dir_ndx))
        self.encoder.start_list(self.lists.next_start)
        builder = self.builder
        save_io_error = builder.io_error
        prev: SendEntry | None = None
        for _, sent, _ in group:
            if prev is not None and sent.path == prev.path and prev.entry.flags & FLAG_CONTENT_DIR:
                sent.entry.flags &= ~FLAG_CONTENT_DIR  # the same directory again: list once
            await builder.send_dir_list(sent, depth)
            prev = sent
        io_error = builder.io_error
        if io_error == save_io_error or self.ignore_errors:
            self.wire.write(self.encoder.end(0))
        else:
            self.wire.write(self.encoder.end(io_error if self.safe_flist else 0))
        ordered = self._sorted(builder.take_entries())
        self.lists.add(ordered, first, dir_ndx)
        self._queue_children(self._number_dirs(ordered))
        if not self._pending():
            self._end()

    def _end(self) -> None:
        self.wire.write(self.ndx_out.encode(NDX_FLIST_EOF))
        self.eof = True
        self.builder.leave_filter_dirs()

    def _pending(self) -> bool:
        while self._stack and not self._stack[-1]:
            self._stack.pop()
        return bool(self._stack)

    def _sorted(self, entries: list[SendEntry]) -> list[SendEntry]:
        protocol = self.protocol
        return sorted(entries, key=lambda sent: entry_key(sent.entry, protocol))

    def _number_dirs(self, ordered: list[SendEntry]) -> list[PendingDir]:
        """add_dirs_to_tree: number a sorted list's directories.

        A repeated name is a duplicate of the one before it (flist_sort_and_clean's
        FLAG_DUPLICATE): both are listed in one list.
        """
        dirs: list[PendingDir] = []
        prev_dir: bytes | None = None  # the name of the entry before, if a directory
        for sent in ordered:
            name = sent.entry.name
            if sent.entry.is_dir():
                dirs.append((self.dir_count, sent, name == prev_dir))
                self.dir_count += 1
                prev_dir = name
            else:
                prev_dir = None
        return dirs

    def _queue_children(self, dirs: list[PendingDir]) -> None:
        children = deque(d for d in dirs if d[1].entry.name.rpartition(b"/")[2] != b".")
        if children:
            self._stack.append(children)
