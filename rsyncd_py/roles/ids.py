"""Owner and group of received entries (uidlist.c match_uid / match_gid, by name).

rsync maps the sender's ids to local ones through the names in the id lists, unless
--numeric-ids. A FileSystem stores both the numeric id and the name (`Stat.uid` and
`Stat.user`), so the roles pass on the sender's pair and compare by name whenever both
sides have one: "alice" is the same owner whatever number each side gives her. Without
names (--numeric-ids, or an id the sender could not name) the numbers are compared.

rsync only changes owners as root; this server always keeps them (the store records
them whatever user the server runs as, and a local root is the supported setup).
"""

from __future__ import annotations

from rsyncd_py.fs.base import Stat
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.roles.transfer import Transfer


def _same(
    numeric: bool, want_id: int, want_name: bytes | None, have_id: int, have_name: bytes | None
) -> bool:
    if not numeric and want_name is not None and have_name is not None:
        return want_name == have_name
    return want_id == have_id


def owner_differs(t: Transfer, entry: FileEntry, st: Stat) -> bool:
    """generator.c ownership_differs, the uid half."""
    if not t.opts.preserve_uid or entry.uid is None:
        return False
    return not _same(bool(t.opts.numeric_ids), entry.uid, entry.user, st.uid, st.user)


def group_differs(t: Transfer, entry: FileEntry, st: Stat) -> bool:
    """generator.c ownership_differs, the gid half."""
    if not t.opts.preserve_gid or entry.gid is None:
        return False
    return not _same(bool(t.opts.numeric_ids), entry.gid, entry.group, st.gid, st.group)


def wanted_owner(t: Transfer, entry: FileEntry, current: Stat | None) -> tuple[int, bytes | None]:
    """The (uid, name) an entry should have."""
    if t.opts.preserve_uid and entry.uid is not None:
        return entry.uid, None if t.opts.numeric_ids else entry.user
    if current is not None:
        return current.uid, current.user
    return t.owner[0], None


def wanted_group(t: Transfer, entry: FileEntry, current: Stat | None) -> tuple[int, bytes | None]:
    """The (gid, name) an entry should have."""
    if t.opts.preserve_gid and entry.gid is not None:
        return entry.gid, None if t.opts.numeric_ids else entry.group
    if current is not None:
        return current.gid, current.group
    return t.owner[1], None


def apply_names(
    entries: list[FileEntry], users: dict[int, bytes], groups: dict[int, bytes]
) -> None:
    """Attach the id lists' names to the entries (recv_id_list's mapping step)."""
    for entry in entries:
        if entry.uid is not None and entry.user is None:
            entry.user = users.get(entry.uid & 0xFFFFFFFF)
        if entry.gid is not None and entry.group is None:
            entry.group = groups.get(entry.gid & 0xFFFFFFFF)
