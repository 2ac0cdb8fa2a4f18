"""Receive the filter rules and the file lists of a push.

Mirrors exclude.c recv_filter_list, flist.c recv_file_list and uidlist.c recv_id_list.

Theory of operation. The receiving side reads, in order: the client's filter rules
(only when it will need them: --delete or --prune-empty-dirs), then the first file
list's entries up to the end marker. Without incremental recursion the uid and gid name
lists follow, and below protocol 30 a trailing io_error int; the list is sorted into
index order with duplicates deactivated, and that is the whole transfer.

With incremental recursion (CF_INC_RECURSE) the first list holds only the top level;
each directory's contents follow later as a list of its own, headed by
`NDX_FLIST_OFFSET - dir_ndx` and interleaved with the transfer (`ListReceiver.receive_sub`,
called by the receiver task when it meets such a header). One `ListReceiver` reads every
list of the session: the decoder's "same as before" state and the ACL/xattr caches run
on across lists, owner names arrive inline the first time an id is named (and apply to
every later entry with that id), and each list's directories are numbered in the
`DirIndex` its sub-list headers refer to. Every entry of a sub-list must lie directly in
the directory its header names ("ABORTING due to invalid path from sender").

State: `lists` (the receiver's view of the lists not freed yet), `unseen` (lists the
generator has not picked up yet), `dirs`, `users`/`groups` (names by sender id), the
io_error bits of the list ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rsyncd_py.protocol.acls import AclReceiver
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import IOERR_VALID_MASK
from rsyncd_py.protocol.errors import ExitCode, ProtocolError
from rsyncd_py.protocol.filters import read_filter_list
from rsyncd_py.protocol.flist import FileEntry, FlistDecoder, FlistOptions, ListEnd
from rsyncd_py.protocol.flist_chain import DirIndex, FileList, FileLists
from rsyncd_py.protocol.flist_sort import sort_and_clean
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.idlist import read_id_list
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.xattrs import XattrReceiver
from rsyncd_py.roles.acl_xattr import map_acl_ids, new_receivers
from rsyncd_py.roles.idmap import IdMap
from rsyncd_py.roles.ids import apply_names
from rsyncd_py.wire import Wire


@dataclass
class ReceivedList:
    """What the sender told us in its first file list."""

    entries: list[FileEntry]  # sorted; index == wire ndx - ndx_start
    io_error: int  # the sender's io_error bits
    filter_rules: list[bytes]
    acls: AclReceiver | None = None  # -A: the ACLs the entries' acl_ndx refer to
    xattrs: XattrReceiver | None = None  # -X: the sets the entries' xattr_ndx refer to


def receiver_wants_filters(opts: ServerOptions, protocol: int) -> bool:
    """Whether a receiving server reads the client's rules (exclude.c recv_filter_list)."""
    return bool(opts.prune_empty_dirs) or bool(
        opts.delete_mode and (not opts.delete_excluded or protocol >= 29)
    )


def flist_options(opts: ServerOptions, neg: Negotiated) -> FlistOptions:
    """The file-list encoding this session agreed on."""
    from rsyncd_py.protocol import checksums

    return FlistOptions(
        protocol=neg.protocol,
        varint_flags=neg.varint_flist_flags,
        safe_flist=neg.safe_flist,
        preserve_uid=bool(opts.preserve_uid),
        preserve_gid=bool(opts.preserve_gid),
        preserve_links=bool(opts.preserve_links),
        preserve_devices=bool(opts.preserve_devices),
        preserve_specials=bool(opts.preserve_specials),
        preserve_hard_links=bool(opts.preserve_hard_links),
        preserve_atimes=bool(opts.preserve_atimes),
        preserve_crtimes=bool(opts.preserve_crtimes),
        preserve_acls=bool(opts.preserve_acls),
        preserve_xattrs=opts.preserve_xattrs,
        checksum_len=checksums.digest_len(neg.file_checksum) if opts.always_checksum else 0,
        relative_paths=opts.relative_paths > 0,
        numeric_ids=bool(opts.numeric_ids),
        id0_names=neg.id0_names,
        inc_recurse=neg.inc_recurse,
    )


async def receive_filter_rules(wire: Wire, opts: ServerOptions, protocol: int) -> list[bytes]:
    """Read the client's filter rules if this receiver asks for them."""
    if not receiver_wants_filters(opts, protocol):
        return []
    return await wire.read(lambda buf: read_filter_list(buf, protocol))


class ListReceiver:
    """flist.c recv_file_list for every list of one push (see the module docstring)."""

    def __init__(self, wire: Wire, opts: ServerOptions, neg: Negotiated) -> None:
        self.wire = wire
        self.options = flist_options(opts, neg)
        self.incremental = neg.inc_recurse
        acls, xattrs = new_receivers(opts)
        start = 1 if self.incremental else 0
        self.decoder = FlistDecoder(self.options, ndx_start=start, acls=acls, xattrs=xattrs)
        self.lists: FileLists[FileEntry] = FileLists(incremental=self.incremental)
        self.unseen: deque[FileList[FileEntry]] = deque()
        self.dirs: DirIndex[FileEntry] = DirIndex()
        self.users: dict[int, bytes] = {}
        self.groups: dict[int, bytes] = {}
        self._acls_mapped = (0, 0)  # ACLs whose ids are mapped already (access, default)
        # --usermap/--groupmap (--chown): parsed as the first list arrives (recv_file_list)
        self.maps = (
            self._id_map(opts.usermap, users=True),
            self._id_map(opts.groupmap, users=False),
        )

    @property
    def acls(self) -> AclReceiver | None:
        return self.decoder.acls

    @property
    def xattrs(self) -> XattrReceiver | None:
        return self.decoder.xattrs

    async def receive_first(self, filter_rules: list[bytes]) -> ReceivedList:
        """Rsync flist.c:recv_file_list(f, -1): the first (or only) list."""
        options = self.options
        protocol = options.protocol
        io_error = await self._read_entries()
        if not self.incremental:
            # -A sends both lists (the ids its entries name) even without -o/-g
            if (options.preserve_uid or options.preserve_acls) and not options.numeric_ids:
                self.users = await self.wire.read(self._id_list_reader)
            if (options.preserve_gid or options.preserve_acls) and not options.numeric_ids:
                self.groups = await self.wire.read(self._id_list_reader)
        entries = self._finish_list(None)
        if protocol < 30:
            io_error |= await self.wire.read(_read_int)
        flist = self.lists.add(entries)
        if self.incremental:
            added = self.dirs.add(entries, FileEntry.is_dir)
            first = next((e for e in entries if e.active), None)
            if added and first is not None and first.name == b".":
                # the first list holds the contents of "." (index 0): no sub-list follows
                flist.parent, flist.parent_ndx = added[0][1], added[0][0]
                self.dirs.discard(added[0][0])
        self.unseen.append(flist)
        return ReceivedList(
            entries, io_error & IOERR_VALID_MASK, filter_rules, self.acls, self.xattrs
        )

    async def receive_sub(self, dir_ndx: int) -> tuple[FileList[FileEntry], int]:
        """Rsync flist.c:recv_file_list(f, dir_ndx): one directory's contents.

        Returns the list (added to `lists` and `unseen`) and its io_error bits.
        """
        parent = self.dirs.take(dir_ndx)
        if not parent.active:
            raise ProtocolError(f"rsync: refusing flist for cleared dir_ndx {dir_ndx}")
        self.decoder.start_list(self.lists.next_start)
        io_error = await self._read_entries()
        entries = self._finish_list(parent)
        flist = self.lists.add(entries, parent, dir_ndx)
        self.dirs.add(entries, FileEntry.is_dir)
        self.unseen.append(flist)
        return flist, io_error & IOERR_VALID_MASK

    async def _read_entries(self) -> int:
        """The entries up to the end marker; returns the marker's io_error."""
        decoder = self.decoder
        while True:
            item = await self.wire.read(lambda buf: read_item(buf, decoder.read))
            if isinstance(item, ListEnd):
                return item.io_error

    def _finish_list(self, parent: FileEntry | None) -> list[FileEntry]:
        """Names, ACL ids and index order for the entries just read."""
        received = self.decoder.entries
        if self.incremental:
            self._check_dirnames(received, parent)
            for entry in received:  # uidlist.c recv_user_name: inline, first sight only
                if entry.uid is not None and entry.user is not None:
                    self.users.setdefault(entry.uid & 0xFFFFFFFF, entry.user)
                if entry.gid is not None and entry.group is not None:
                    self.groups.setdefault(entry.gid & 0xFFFFFFFF, entry.group)
        acls = self.acls
        if self.incremental and acls is not None:
            self._note_acl_names(acls)
        apply_names(received, self.users, self.groups)
        maps = self.maps
        for idmap in maps:
            if idmap is not None:
                idmap.apply(received)
        if acls is not None and (not self.options.numeric_ids or any(maps)):
            map_acl_ids(acls, self.users, self.groups, start=self._acls_mapped, maps=maps)
            self._acls_mapped = (len(acls.access), len(acls.default))
        return sort_and_clean(received, self.options.protocol)

    def _note_acl_names(self, acls: AclReceiver) -> None:
        """recv_ida_entries: a name sent inline in an ACL names that id from now on."""
        for received, first in (
            (acls.access, self._acls_mapped[0]),
            (acls.default, self._acls_mapped[1]),
        ):
            for racl in received[first:]:
                for ida in racl.names:
                    if ida.name is not None:
                        names = self.users if ida.is_user else self.groups
                        names.setdefault(ida.id, ida.name)

    def _check_dirnames(self, entries: list[FileEntry], parent: FileEntry | None) -> None:
        """recv_file_list: every entry must sit directly in the list's directory."""
        want = parent.name if parent is not None else b""
        relative = self.options.relative_paths
        for entry in entries:
            name = entry.name.lstrip(b"/") if relative else entry.name
            directory, _, base = name.rpartition(b"/")
            if directory != want:
                raise ProtocolError(
                    "ABORTING due to invalid path from sender: "
                    f"{directory.decode('utf-8', 'surrogateescape')}/"
                    f"{base.decode('utf-8', 'surrogateescape')}",
                    ExitCode.RERR_UNSUPPORTED,
                )

    def _id_map(self, spec: str | None, *, users: bool) -> IdMap | None:
        if not spec:
            return None
        options = self.options
        return IdMap.parse(
            spec,
            users=users,
            wire=self.wire,
            id0_names=options.id0_names,
            numeric_ids=options.numeric_ids,
        )

    def _id_list_reader(self, buf: ReceiveBuffer) -> dict[int, bytes] | None:
        protocol, id0 = self.options.protocol, self.options.id0_names
        return read_item(buf, lambda cur: read_id_list(cur, protocol, id0_names=id0))


def _read_int(buf: ReceiveBuffer) -> int | None:
    return read_item(buf, lambda cur: cur.int32())
