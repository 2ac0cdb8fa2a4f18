"""-H on the receiving side: rsync's hlink.c for a non-incremental file list.

Theory of operation. `match_hard_links` groups the entries the sender marked as hard
linked (by the index of the group's first entry from protocol 30 on, by dev/inode
before) and chains each group in index order: every member points at the one before it
(`prev`), the first is FLAG_HLINK_FIRST and the last FLAG_HLINK_LAST; a group of one is
an ordinary file. The generator then walks the list as usual, and for every member
except a group's first asks `check` first:

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

Entry state lives in `FileEntry.flags` (FLAG_HLINK_*, FLAG_FILE_SENT, FLAG_SKIP_HLINK)
and in `prev`, rsync's F_HL_PREV: after `finish` a member's `prev` names its leader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import ITEM_LOCAL_CHANGE, ITEM_XNAME_FOLLOWS
from rsyncd_py.protocol.flist import FileEntry
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


def match_hard_links(entries: list[FileEntry]) -> dict[int, int]:
    """hlink.c match_hard_links: flag and chain the groups; return the `prev` links."""
    groups: dict[object, list[int]] = {}
    for ndx, entry in enumerate(entries):
        if not entry.active or entry.is_dir():
            continue
        key: object = entry.hlink_first_ndx if entry.hlink_first_ndx is not None else entry.dev_ino
        if key is not None:
            groups.setdefault(key, []).append(ndx)
    prev: dict[int, int] = {}
    for members in groups.values():
        if len(members) < 2:
            continue  # alone in its group: an ordinary file
        before = -1
        for ndx in members:
            entries[ndx].flags |= FLAG_HLINKED
            prev[ndx] = before
            before = ndx
        entries[members[0]].flags |= FLAG_HLINK_FIRST
        entries[members[-1]].flags |= FLAG_HLINK_LAST
    return prev


def is_hlinked(entry: FileEntry) -> bool:
    return bool(entry.flags & FLAG_HLINKED)


class HardLinks:
    """hlink.c's generator side for one session (see the module docstring)."""

    def __init__(self, generator: Generator) -> None:
        self.g = generator
        self.t: Transfer = generator.t
        self.prev = match_hard_links(self.t.entries)

    def not_first(self, entry: FileEntry) -> bool:
        """F_HLINK_NOT_FIRST."""
        return bool(entry.flags & FLAG_HLINKED) and not entry.flags & FLAG_HLINK_FIRST

    def not_last(self, entry: FileEntry) -> bool:
        """F_HLINK_NOT_LAST."""
        return bool(entry.flags & FLAG_HLINKED) and not entry.flags & FLAG_HLINK_LAST

    def _check_prior(self, ndx: int) -> int:
        """hlink.c check_prior: the nearest earlier member that was not skipped, or -1."""
        prev = self.prev.get(ndx, -1)
        while prev >= 0 and self.t.entries[prev].flags & FLAG_SKIP_HLINK:
            prev = self.prev.get(prev, -1)
            self.prev[ndx] = prev
        return prev

    async def check(self, entry: FileEntry, ndx: int, path: bytes, st: Stat | None) -> bool:
        """hlink.c hard_link_check: True if the entry is dealt with (linked or queued)."""
        t = self.t
        prev_ndx = self._check_prior(ndx)
        if prev_ndx < 0:
            return False  # every earlier member was skipped: this one leads
        prev = t.entries[prev_ndx]
        if not prev.flags & FLAG_HLINK_DONE:
            if prev.flags & FLAG_FILE_SENT:
                # queue behind the member being transferred; `finish` links us
                self.prev[ndx] = self.prev.get(prev_ndx, -1)
                self.prev[prev_ndx] = ndx
                entry.flags |= FLAG_FILE_SENT
                return True
            return False  # no leader yet: handle this one as an ordinary file
        if not prev.flags & FLAG_HLINK_FIRST:  # a finished non-first points at its leader
            prev_ndx = self._check_prior(prev_ndx)
            self.prev[ndx] = prev_ndx
            prev = t.entries[prev_ndx]
        leader_path = t.path_of(prev)
        leader_st = await self._lstat(leader_path)
        if leader_st is None and not t.dry_run:
            t.wire.rprintf(Log.ERROR_XFER, _stat_failed(leader_path))
            return True
        await self._maybe_hard_link(entry, ndx, path, st, (leader_path, leader_st, prev.name))
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
            member = t.entries[waiting]
            member.flags = (member.flags & ~FLAG_HLINK_FIRST) | FLAG_HLINK_DONE
            following = self.prev.get(waiting, -1)
            self.prev[waiting] = ndx
            member_path = t.path_of(member)
            member_st = await self._lstat(member_path)
            await self._maybe_hard_link(
                member, waiting, member_path, member_st, (path, st, entry.name)
            )
            if t.do_xfers:
                self.g.send_success(waiting, up_to_date=True)
            waiting = following

    async def skipped(self, entry: FileEntry, ndx: int) -> None:
        """generator.c handle_skipped_hlink: pass the "last" role back and redo that one."""
        t = self.t
        entry.flags |= FLAG_SKIP_HLINK
        if not entry.flags & FLAG_HLINK_LAST:
            return
        prev_ndx = self._check_prior(ndx)
        if prev_ndx < 0:
            return
        prev = t.entries[prev_ndx]
        if prev.flags & (FLAG_HLINK_DONE | FLAG_FILE_SENT):
            return
        prev.flags |= FLAG_HLINK_LAST
        await self.g.recv_generator(prev, prev_ndx)

    async def finished(self, ndx: int, ok: bool) -> None:
        """The receiver finished (or the sender could not send) hard-linked `ndx`."""
        entry = self.t.entries[ndx]
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
            if t.name_level >= 2 and not t.opts.stdout_format_has_i:
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
