"""-H on the receiving side: rsync's hlink.c.

Theory of operation. `match_list` (match_hard_links) groups the entries of each file
list the sender marked as hard linked (by the index of the group's first entry from
protocol 30 on, by dev/inode before) and chains each group in index order: every member
points at the one before it (`prev`, rsync's F_HL_PREV, by wire index), the first is
FLAG_HLINK_FIRST and the last FLAG_HLINK_LAST; without incremental recursion a group of
one is an ordinary file. The generator then walks the list as usual, and for every
member except a group's first asks `check` first:

- the previous member is done (up to date, created or linked): link to the group's
  leader and report "hf... NAME => LEADER";
- the previous member is being transferred (FLAG_FILE_SENT): queue behind it; the
  link is made when the receiver reports the transfer done (`finished`);
- otherwise ("looking for a leader") the member is handled as a normal file -- but a
  missing file that is not the group's last is deferred, so only one copy of the
  content travels (the last member's) and the others are linked to it afterwards.

`finish` (finish_hard_link) marks the leader done and links every member queued behind
it. A member that is skipped (--ignore-existing, --max-size, a failed send) hands the
"last" role back to the member before it (`skipped`, handle_skipped_hlink).

With incremental recursion a group may span lists, and a list may be freed before a
later one brings more members. `prior` (rsync's prior_hlinks) follows each group across
lists by its number (the sender's index of its first member): while the group has no
leader yet it holds the index of its last member seen, so the next list chains on to
it; once a leader is done it holds the leader's path and name, which is all a member in
a later list needs once the leader's own list is gone. Deferred and queued members keep
their list "in progress" (`Generator.count`) until they are linked, so a list is never
freed under a member that still waits.

Entry state lives in `FileEntry.flags` (FLAG_HLINK_*, FLAG_FILE_SENT, FLAG_SKIP_HLINK)
and in `prev`; after `finish` a member's `prev` names its leader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import ITEM_LOCAL_CHANGE, ITEM_XNAME_FOLLOWS
from rsyncd_py.protocol.errors import ExitCode, ProtocolError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.flist_chain import FileList
from rsyncd_py.roles.delete import DEL_FOR_FILE
from rsyncd_py.roles.metadata import quote, report_fs_error
from rsyncd_py.roles.transfer import (
    FLAG_FILE_SENT,
    FLAG_HLINK_DONE,
    FLAG_HLINK_FIRST,
    FLAG_HLINK_LAST,
    FLAG_HLINKED,
    FLAG_SKIP_HLINK,
    Transfer,
)
from rsyncd_py.wire import Log

if TYPE_CHECKING:
    from rsyncd_py.roles.generator import Generator

# a finished group's leader: (root-relative path, name as the client knows it)
Leader = tuple[bytes, bytes]


def is_hlinked(entry: FileEntry) -> bool:
    return bool(entry.flags & FLAG_HLINKED)


def group_key(entry: FileEntry) -> object:
    """What puts an entry in a hard-link group (F_HL_GNUM, or dev/ino below 30)."""
    return entry.hlink_first_ndx if entry.hlink_first_ndx is not None else entry.dev_ino


class HardLinks:
    """hlink.c's generator side for one session (see the module docstring)."""

    def __init__(self, generator: Generator) -> None:
        self.g = generator
        self.t: Transfer = generator.t
        self.incremental = self.t.inc_recurse
        self.prev: dict[int, int] = {}
        self.prior: dict[int, int | Leader] = {}  # incremental: group number -> see above

    def _entry(self, ndx: int) -> FileEntry | None:
        """The entry at `ndx` while its list is still the generator's (else None)."""
        return self.g.lists.lookup(ndx)

    # --- hlink.c match_hard_links / match_gnums -----------------------------------------

    def match_list(self, flist: FileList[FileEntry]) -> None:
        """hlink.c match_hard_links: flag and chain the groups of a newly arrived list."""
        groups: dict[object, list[int]] = {}
        for ndx, entry in flist.indexed():
            if entry.active and not entry.is_dir():
                key = group_key(entry)
                if key is not None:
                    groups.setdefault(key, []).append(ndx)
        for key, members in groups.items():
            before = -1
            first = flist.get(members[0])
            assert first is not None
            if self.incremental:
                assert isinstance(key, int)
                before = self._chain_from_prior(key, flist, first)
            elif len(members) < 2:
                continue  # alone in its group: an ordinary file
            else:
                first.flags |= FLAG_HLINK_FIRST
            for ndx in members:
                entry = flist.get(ndx)
                assert entry is not None
                entry.flags |= FLAG_HLINKED
                self.prev[ndx] = before
                before = ndx
            last = flist.get(members[-1])
            assert last is not None
            last.flags |= FLAG_HLINK_LAST
            if self.incremental and not isinstance(self.prior.get(key), tuple):
                assert isinstance(key, int)
                self.prior[key] = members[-1]

    def _chain_from_prior(self, gnum: int, flist: FileList[FileEntry], first: FileEntry) -> int:
        """match_gnums with inc_recurse: where a group met in an earlier list goes on."""
        node = self.prior.get(gnum)
        if node is None:
            if gnum < flist.ndx_start:
                raise ProtocolError(f"hard-link gnum {gnum} precedes flist start {flist.ndx_start}")
            first.flags |= FLAG_HLINK_FIRST
            return -1
        if isinstance(node, tuple):
            return -1  # the group's leader is done: link to its path
        earlier = self._entry(node)
        if earlier is None:
            first.flags |= FLAG_HLINK_FIRST  # every earlier member was skipped
            return -1
        earlier.flags &= ~FLAG_HLINK_LAST
        return node

    def forget(self, flist: FileList[FileEntry]) -> None:
        """Drop the chain links of a freed list (its indexes are no longer valid)."""
        for ndx, entry in flist.indexed():
            if entry.flags & FLAG_HLINKED:
                self.prev.pop(ndx, None)

    # --- the generator's questions ------------------------------------------------------

    def not_first(self, entry: FileEntry) -> bool:
        """F_HLINK_NOT_FIRST."""
        return bool(entry.flags & FLAG_HLINKED) and not entry.flags & FLAG_HLINK_FIRST

    def not_last(self, entry: FileEntry) -> bool:
        """F_HLINK_NOT_LAST."""
        return bool(entry.flags & FLAG_HLINKED) and not entry.flags & FLAG_HLINK_LAST

    def _check_prior(self, entry: FileEntry, ndx: int) -> tuple[int, Leader | None]:
        """hlink.c check_prior: the nearest earlier member not skipped, or a done leader.

        Returns (its index, None), or (-1, the leader) once the group's leader is done
        in a list the generator has freed, or (-1, None) if there is neither.
        """
        prev = self.prev.get(ndx, -1)
        while prev >= 0:
            found = self._entry(prev)
            if found is None:
                break
            if not found.flags & FLAG_SKIP_HLINK:
                return prev, None
            prev = self.prev[ndx] = self.prev.get(prev, -1)
        if self.incremental and entry.hlink_first_ndx is not None:
            node = self.prior.get(entry.hlink_first_ndx)
            if isinstance(node, tuple):
                return -1, node
            if node is not None:
                self.prev[ndx] = -1  # the prior member must have been skipped
        return -1, None

    async def check(self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None) -> bool:
        """hlink.c hard_link_check: True if the entry is dealt with (linked or queued)."""
        t = self.t
        prev_ndx, leader = self._check_prior(entry, ndx)
        if leader is None:
            prev = self._entry(prev_ndx) if prev_ndx >= 0 else None
            if prev is None:
                return False  # every earlier member was skipped: this one leads
            if not prev.flags & FLAG_HLINK_DONE:
                if prev.flags & FLAG_FILE_SENT:
                    # queue behind the member being transferred; `finish` links us
                    self.prev[ndx] = self.prev.get(prev_ndx, -1)
                    self.prev[prev_ndx] = ndx
                    entry.flags |= FLAG_FILE_SENT
                    self.g.count(ndx, +1)
                    return True
                return False  # no leader yet: handle this one as an ordinary file
            if not prev.flags & FLAG_HLINK_FIRST:  # a finished non-first points at its leader
                prev_ndx, leader = self._check_prior(prev, prev_ndx)
                self.prev[ndx] = prev_ndx
                prev = self._entry(prev_ndx) if prev_ndx >= 0 else None
            if leader is None:
                assert prev is not None
                leader = (t.path_of(prev), prev.name)
        leader_path, leader_name = leader
        leader_st = await self._lstat(leader_path)
        if leader_st is None and not t.dry_run:
            t.wire.rprintf(Log.ERROR_XFER, _stat_failed(leader_path))
            return True
        await self._maybe_hard_link(entry, ndx, path, st, (leader_path, leader_st, leader_name))
        if t.do_xfers:
            self.g.send_success(ndx, up_to_date=True)
        entry.flags |= FLAG_HLINK_DONE
        return True

    async def finish(self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None) -> None:
        """hlink.c finish_hard_link: `entry` is done; link everyone queued behind it."""
        t = self.t
        waiting = self.prev.get(ndx, -1)
        if st is None and waiting >= 0:
            st = await self._lstat(path)
            if st is None and not t.dry_run:
                t.wire.rprintf(Log.ERROR_XFER, _stat_failed(path))
                return
        entry.flags |= FLAG_HLINK_FIRST | FLAG_HLINK_DONE
        self.prev[ndx] = -1
        while waiting >= 0:
            member = self._entry(waiting)
            assert member is not None  # its list is in progress until it is linked
            member.flags = (member.flags & ~FLAG_HLINK_FIRST) | FLAG_HLINK_DONE
            following = self.prev.get(waiting, -1)
            self.prev[waiting] = ndx
            member_path = t.path_of(member)
            member_st = await self._lstat(member_path)
            await self._maybe_hard_link(
                member, waiting, member_path, member_st, (path, st, entry.name)
            )
            self.g.count(waiting, -1)
            if t.do_xfers:
                self.g.send_success(waiting, up_to_date=True)
            waiting = following
        if self.incremental and entry.hlink_first_ndx is not None:
            gnum = entry.hlink_first_ndx
            if gnum not in self.prior:
                raise ProtocolError(
                    f"Unable to find a hlink node for {gnum} ({_s(entry.name)})",
                    ExitCode.RERR_MESSAGEIO,
                )
            self.prior[gnum] = (path, entry.name)

    async def skipped(self, entry: FileEntry, ndx: int) -> None:
        """generator.c handle_skipped_hlink: pass the "last" role back and redo that one."""
        entry.flags |= FLAG_SKIP_HLINK
        if not entry.flags & FLAG_HLINK_LAST:
            return
        prev_ndx, _ = self._check_prior(entry, ndx)
        prev = self._entry(prev_ndx) if prev_ndx >= 0 else None
        if prev is None or prev.flags & (FLAG_HLINK_DONE | FLAG_FILE_SENT):
            return
        prev.flags |= FLAG_HLINK_LAST
        self.g.count(prev_ndx, -1)  # it was deferred as "not last": undo that
        await self.g.recv_generator(prev, prev_ndx)

    async def finished(self, ndx: int, ok: bool) -> None:
        """The receiver finished (or the sender could not send) hard-linked `ndx`."""
        entry = self._entry(ndx)
        if entry is None:
            return
        if ok:
            await self.finish(entry, ndx, self.t.path_of(entry), None)
        else:
            await self.skipped(entry, ndx)

    async def _maybe_hard_link(
        self,
        entry: FileEntry,
        ndx: int,
        path: bytes,
        st: Stat | None,
        leader: tuple[bytes, Stat | None, bytes],
    ) -> None:
        """hlink.c maybe_hard_link: link `path` to the leader unless it already is.

        `leader` is the leader's (path, Stat, name as the client knows it).
        """
        t = self.t
        g = self.g
        leader_path, leader_st, leader_name = leader
        if (
            st is not None
            and leader_st is not None
            and st.link_key is not None
            and st.link_key == leader_st.link_key
        ):
            g.itemize(entry, ndx, st, ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS, xname=b"")
            if t.name_level >= 2 and t.attrs_report:
                g.info(f"{_s(t.display_name(entry))} is uptodate\n")
            entry.flags |= FLAG_HLINK_DONE
            return
        if (
            st is not None
            and st.is_dir()
            and not await g.deleter.make_room(entry, st, DEL_FOR_FILE)
        ):
            return
        if not t.dry_run:
            try:
                await t.fs.link(path, leader_path)
            except FsError as exc:
                report_fs_error(t, exc, f"link {quote(path)} => {quote(leader_path)} failed")
                return
        g.itemize(entry, ndx, st, ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS, xname=leader_name)

    async def _lstat(self, path: bytes) -> Stat | None:
        try:
            return await self.t.fs.lstat(path)
        except FsError:
            return None


def _stat_failed(path: bytes) -> str:
    return f"rsync: [generator] stat {quote(path)} failed: No such file or directory (2)\n"


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
