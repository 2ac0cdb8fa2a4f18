"""ACLs and xattrs (-A, -X) in the roles: where rsync's lists meet `Stat.acl`/`Stat.xattrs`.

The file list carries each entry's ACLs and xattrs as indexes into per-session lists
(protocol/acls.py, protocol/xattrs.py; `FileEntry.acl_ndx`, `def_acl_ndx`,
`xattr_ndx`). This module is everything the roles do with them.

Push (we receive; generator.c, receiver.c, rsync.c set_file_attrs):
- `itemize`: the 'a' flag (ITEM_REPORT_ACL) when acls.c set_acl would change the
  entry's ACLs, the 'x' flag (ITEM_REPORT_XATTR) when xattr_diff finds a difference --
  for a new entry whenever it has xattrs -- and the request for abbreviated xattr values
  that follows such a record (or a transfer request) on the wire.
- `answer_follows`/`answer_reader`: the sender's answer after its echo of that record;
  for an entry that is not transferred the receiver then sets its attributes again
  (`sets_attrs_again`), as receiver.c recv_files does, now that the values are known.
- `wanted`: the ACL and xattrs set_file_attrs (or a new file's commit) gives an entry:
  what was sent, plus what -A/-X leave alone -- a symlink's ACL, the namespaces rsync
  does not manage as this user, and values the generator does not know yet (rsync's
  generator skips those; the receiver sets them after the answer).
Pull (we send; flist.c, sender.c): the FlistEncoder writes each entry's ACLs and xattrs
from its Stat, the sender reads the generator's requests after its records
(`request_reader`) and answers after its echoes (`answer`), and the ids the ACLs name
join the uid/gid lists (`acl_id_names`).

"Root" for the xattr namespaces is rsync's am_root: euid 0, or --super. --fake-super's
renaming into user.rsync.* is not implemented (names are kept as they are).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat as stat_mod
from collections.abc import Callable
from typing import TYPE_CHECKING

from rsyncd_py.fs.base import Stat
from rsyncd_py.protocol.acl_blob import acl_blob_from_rsync, acls_differ, rsync_acls
from rsyncd_py.protocol.acls import AclReceiver, AclSender, RsyncAcl
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import (
    CF_AVOID_XATTR_OPTIM,
    ITEM_LOCAL_CHANGE,
    ITEM_REPORT_ACL,
    ITEM_REPORT_PERMS,
    ITEM_REPORT_XATTR,
    ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
)
from rsyncd_py.protocol.errors import ExitCode, ProtocolError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.xattrs import XattrReceiver, XattrSender, local_xattrs, request_follows

if TYPE_CHECKING:
    from rsyncd_py.roles.idmap import IdMap

Pairs = tuple[tuple[bytes, bytes], ...]
ACCESSPERMS = 0o777
CHMOD_BITS = 0o7777
# records of entries whose attributes generator.c does not set before itemizing them
_NOT_IN_PLACE = ITEM_TRANSFER | ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS


def am_root(opts: ServerOptions) -> bool:
    """Rsync's am_root > 0: running as root, or told --super."""
    return os.geteuid() == 0 or opts.am_root >= 2


def check_protocol(opts: ServerOptions, protocol: int) -> None:
    """compat.c setup_protocol: -A and -X need protocol 30 (the client says the same)."""
    if protocol >= 30:
        return
    for wanted, name in ((opts.preserve_acls, "--acls"), (opts.preserve_xattrs, "--xattrs")):
        if wanted:
            raise ProtocolError(
                f"{name} requires protocol 30 or higher (negotiated {protocol}).",
                ExitCode.RERR_PROTOCOL,
            )


def want_xattr_optim(neg: Negotiated) -> bool:
    """compat.c want_xattr_optim: protocol 31+ unless the client sent 'x' (3.1.1+ do)."""
    return neg.protocol >= 31 and not neg.compat_flags & CF_AVOID_XATTR_OPTIM


def new_receivers(opts: ServerOptions) -> tuple[AclReceiver | None, XattrReceiver | None]:
    """The caches a receiving session's file list fills (None where not preserved)."""
    acls = AclReceiver() if opts.preserve_acls else None
    xattrs = None
    if opts.preserve_xattrs:
        xattrs = XattrReceiver(am_root=am_root(opts), level=opts.preserve_xattrs)
    return acls, xattrs


def map_acl_ids(
    acls: AclReceiver,
    users: dict[int, bytes],
    groups: dict[int, bytes],
    *,
    start: tuple[int, int] = (0, 0),
    maps: tuple[IdMap | None, IdMap | None] = (None, None),
) -> None:
    """uidlist.c recv_id_list's match_acl_ids: the sender's ids, mapped by name.

    `start`: the (access, default) ACLs already mapped, which are left alone. `maps`
    are the --usermap and --groupmap, whose rules come first.
    """

    def local_id(is_user: bool, ident: int, inline: bytes | None) -> int:
        name = inline or (users if is_user else groups).get(ident)
        idmap = maps[0] if is_user else maps[1]
        if idmap is not None and (mapped := idmap.rule_for(ident, name)) is not None:
            return mapped
        if name is None:
            return ident
        try:
            text = os.fsdecode(name)
            return pwd.getpwnam(text).pw_uid if is_user else grp.getgrnam(text).gr_gid
        except KeyError:
            return ident

    acls.map_ids(local_id, start=start)


# --- the receiving side (push) ----------------------------------------------------------


class Receiving:
    """The ACL and xattr state of one push session (held by its Transfer)."""

    def __init__(
        self,
        opts: ServerOptions,
        neg: Negotiated,
        acls: AclReceiver | None,
        xattrs: XattrReceiver | None,
    ) -> None:
        self.acls = acls
        self.xattrs = xattrs
        self.am_root = am_root(opts)
        self.do_xfers = bool(opts.do_xfers)
        self.dry_run = bool(opts.dry_run)
        self.optim = want_xattr_optim(neg)

    def _acl_of(self, entry: FileEntry) -> tuple[RsyncAcl | None, RsyncAcl | None]:
        assert self.acls is not None
        access = None if entry.acl_ndx is None else self.acls.access[entry.acl_ndx]
        default = None if entry.def_acl_ndx is None else self.acls.default[entry.def_acl_ndx]
        return access, default

    def _has_acl(self, entry: FileEntry) -> bool:
        return self.acls is not None and entry.acl_ndx is not None and not entry.is_symlink()

    def itemize(self, entry: FileEntry, st: Stat | None, iflags: int) -> tuple[int, bytes]:
        """generator.c itemize's ACL and xattr part: (iflags, request to follow the record).

        `st` is what the destination holds (None: a new entry).
        """
        wanted: tuple[int, ...] = ()
        if st is not None and self._has_acl(entry):
            access, default = self._acl_of(entry)
            if acls_differ(st.acl, st.mode, access, default, entry.mode):
                iflags |= ITEM_REPORT_ACL
                if self._perms_came_with_acl(entry, st, iflags, access):
                    iflags &= ~ITEM_REPORT_PERMS
        if self.xattrs is not None:
            have = None if st is None else local_xattrs(st.xattrs, am_root=self.am_root)
            differs, wanted = self.xattrs.diff(entry.xattr_ndx, have)
            if differs:
                iflags |= ITEM_REPORT_XATTR
        request = b""
        if (
            self.xattrs is not None
            and self.do_xfers
            and iflags & (ITEM_REPORT_XATTR | ITEM_TRANSFER)
        ):
            request = self.xattrs.pack_request(entry.xattr_ndx, wanted)
            if not request_follows(iflags, want_optim=self.optim):
                request = b""
        return iflags, request

    def _perms_came_with_acl(
        self, entry: FileEntry, st: Stat, iflags: int, access: RsyncAcl | None
    ) -> bool:
        """Whether rsync would show no 'p' because setting the ACL set the mode.

        For an entry left in place (not a directory, not transferred or linked) rsync's
        generator runs set_file_attrs before itemize with the same stat: set_acl, when
        it writes the access ACL, also writes the mode's permission bits and updates
        that stat, so itemize sees them equal. Not in a dry run, which sets nothing.
        """
        if self.dry_run or entry.is_dir() or iflags & _NOT_IN_PLACE or access is None:
            return False
        local_access, _ = rsync_acls(st.acl, st.mode)
        if local_access.equal_enough(access, entry.mode):
            return False  # only the default ACL changes: the mode stays as it was
        return (st.mode & ~ACCESSPERMS & CHMOD_BITS) == (entry.mode & ~ACCESSPERMS & CHMOD_BITS)

    def answer_follows(self, iflags: int) -> bool:
        """Whether the sender's echo of a record with `iflags` carries xattr values."""
        return (
            self.xattrs is not None
            and self.do_xfers
            and request_follows(iflags, want_optim=self.optim)
        )

    def answer_reader(self, entry: FileEntry) -> Callable[[ReceiveBuffer], bool | None]:
        """A Wire reader for one value of the sender's answer (True: the end)."""
        assert self.xattrs is not None
        reader = self.xattrs.answer_reader(entry.xattr_ndx, entry.name)
        return lambda buf: read_item(buf, reader.read)

    def sets_attrs_again(self, iflags: int) -> bool:
        """receiver.c: after an answer to a non-transfer record, set the attributes."""
        both = ITEM_XNAME_FOLLOWS | ITEM_LOCAL_CHANGE
        return (
            self.xattrs is not None
            and self.do_xfers
            and bool(iflags & ITEM_REPORT_XATTR)
            and iflags & both != both
        )

    def wanted(
        self, entry: FileEntry, mode: int, current: Stat | None
    ) -> tuple[Pairs, bytes | None]:
        """The (xattrs, acl) set_file_attrs gives `entry` (of `mode`) over `current`."""
        xattrs: Pairs = tuple(current.xattrs) if current is not None else ()
        acl = current.acl if current is not None else None
        if self.xattrs is not None:
            xattrs = self._wanted_xattrs(entry, xattrs)
        if self._has_acl(entry) and not stat_mod.S_ISLNK(mode):
            acl = acl_blob_from_rsync(*self._acl_of(entry), mode)
        return xattrs, acl

    def _wanted_xattrs(self, entry: FileEntry, have: Pairs) -> Pairs:
        """rsync_xal_set's result: the sent set, and what it leaves alone.

        Values still unknown keep the file's, and names outside what this user manages
        stay as they are.
        """
        assert self.xattrs is not None
        managed = local_xattrs(have, am_root=self.am_root)
        pairs, missing = self.xattrs.resolve(entry.xattr_ndx, managed)
        keep = set(missing)
        managed_names = {name for name, _ in managed}
        extra = [(n, v) for n, v in have if n not in managed_names or n in keep]
        return tuple(sorted((*pairs, *extra)))

    def differ(self, entry: FileEntry, st: Stat) -> bool:
        """Whether set_file_attrs would change `st`'s ACL or xattrs."""
        if self.xattrs is None and not self._has_acl(entry):
            return False
        xattrs, acl = self.wanted(entry, entry.mode, st)
        return acl != st.acl or xattrs != tuple(sorted(st.xattrs))


# --- the sending side (pull) --------------------------------------------------------------


def xattr_request_follows(opts: ServerOptions, neg: Negotiated, iflags: int) -> bool:
    """Whether the generator's record with `iflags` carries an xattr request (sender.c)."""
    return (
        bool(opts.preserve_xattrs)
        and bool(opts.do_xfers)
        and request_follows(iflags, want_optim=want_xattr_optim(neg))
    )


def request_reader(
    xattrs: XattrSender | None, entry: FileEntry, name: bytes
) -> Callable[[ReceiveBuffer], tuple[int, ...] | None]:
    """A Wire reader for the generator's request (xattrs.c recv_xattr_request)."""
    if xattrs is None or entry.xattr_ndx is None:
        raise ProtocolError("recv_xattr_request: internal data error!")
    ndx = entry.xattr_ndx
    return lambda buf: read_item(buf, lambda cur: xattrs.read_request(cur, ndx, name))


def answer(
    xattrs: XattrSender | None, entry: FileEntry, nums: tuple[int, ...], current: Stat | None
) -> tuple[bytes, tuple[bytes, ...]]:
    """What follows the echo of that record (send_xattr_request), and the names gone.

    The values are read again from the file's `current` Stat, as rsync re-reads them.
    """
    assert xattrs is not None and entry.xattr_ndx is not None
    values = dict(current.xattrs) if current is not None else {}
    return xattrs.pack_answer(entry.xattr_ndx, nums, values)


def acl_id_names(acls: AclSender | None) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """The ids the sent ACLs named, with their local names (uidlist.c add_uid/add_gid).

    Ids without a local name are left out, as send_one_list leaves them out.
    """
    users: dict[int, bytes] = {}
    groups: dict[int, bytes] = {}
    if acls is None:
        return users, groups
    for ident in acls.user_ids:
        with contextlib.suppress(KeyError):
            users[ident] = os.fsencode(pwd.getpwuid(ident).pw_name)
    for ident in acls.group_ids:
        with contextlib.suppress(KeyError):
            groups[ident] = os.fsencode(grp.getgrgid(ident).gr_name)
    return users, groups
