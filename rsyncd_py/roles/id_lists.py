"""The owner and group names a sending side gives the client (uidlist.c, sending half).

Without incremental recursion the names travel once, after the file list, as the uid
and gid lists (`send_id_lists`): every id an entry or (with -A) an ACL names, by first
appearance, and id 0's name. With it they travel inline instead, the first time an id
is named -- the file-list encoder does that for owners (`FlistEncoder.first_sight`), and
`inline_acl_name` does it for the ids in ACLs, sharing the same first-sight record as
rsync's add_uid/add_gid share their lists.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable, Sequence

from rsyncd_py.protocol.flist import FlistEncoder, FlistOptions
from rsyncd_py.protocol.idlist import pack_id_list
from rsyncd_py.roles import acl_xattr
from rsyncd_py.roles.flist_build import SendEntry


def send_id_lists(encoder: FlistEncoder, entries: Sequence[SendEntry]) -> bytes:
    """uidlist.c send_id_lists: each owner and group name, by first appearance.

    With -A both lists go out, naming the ids the ACLs use too.
    """
    options: FlistOptions = encoder.options
    acl_users, acl_groups = acl_xattr.acl_id_names(encoder.acls)
    out = b""
    for preserve, pick, is_user, acl_names in (
        (options.preserve_uid, lambda s: (s.st.uid, s.st.user), True, acl_users),
        (options.preserve_gid, lambda s: (s.st.gid, s.st.group), False, acl_groups),
    ):
        if not preserve and not options.preserve_acls:
            continue
        names: dict[int, bytes] = {}
        for sent in entries if preserve else ():
            ident, name = pick(sent)
            if name and ident not in names:
                names[ident] = name
        for ident, name in acl_names.items():
            names.setdefault(ident, name)
        if 0 not in names:
            names[0] = local_name(is_user, 0) or b""
        out += pack_id_list(names.items(), options.protocol, id0_names=options.id0_names)
    return out


def inline_acl_name(encoder: FlistEncoder) -> Callable[[bool, int], bytes | None]:
    """add_uid/add_gid for an ACL's id with incremental recursion: its name, once."""

    def name_once(is_user: bool, ident: int) -> bytes | None:
        return local_name(is_user, ident) if encoder.first_sight(is_user, ident) else None

    return name_once


def local_name(is_user: bool, ident: int) -> bytes | None:
    """uidlist.c uid_to_user / gid_to_group on this machine, or None."""
    try:
        name = pwd.getpwuid(ident).pw_name if is_user else grp.getgrgid(ident).gr_name
    except KeyError:
        return None
    return name.encode()
