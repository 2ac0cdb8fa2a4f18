"""roles/acl_xattr.py: what the roles do with received ACLs and xattrs, without a wire.

The interop tests (tests/interop/test_xattrs_acls.py) run all of it against real
rsync; these pin the rules that are hard to provoke from a client running as root:
namespaces a non-root receiver leaves alone, values the generator does not know yet,
when a request follows a record, and the protocol refusal.
"""

from __future__ import annotations

import stat

import pytest

from rsyncd_py.fs.base import Stat
from rsyncd_py.protocol.acls import AclReceiver, AclSender, IdAccess, RsyncAcl
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
from rsyncd_py.protocol.errors import ProtocolError
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.xattrs import XattrReceiver, XattrSender
from rsyncd_py.roles.acl_xattr import (
    Receiving,
    acl_id_names,
    check_protocol,
    map_acl_ids,
    want_xattr_optim,
)

LONG = b"L" * 40


def _neg(protocol: int = 32, flags: int = CF_AVOID_XATTR_OPTIM) -> Negotiated:
    return Negotiated(protocol, flags, "md5", "md5", "none", 1)


def _opts(**values: int) -> ServerOptions:
    opts = ServerOptions()
    for name, value in values.items():
        setattr(opts, name, value)
    return opts


def _receiving(pairs: list[tuple[bytes, bytes]], *, am_root: bool = True) -> Receiving:
    """A Receiving whose xattr list holds one set, `pairs`, at index 0."""
    xattrs = XattrReceiver(am_root=am_root)
    data, _ = XattrSender().encode(pairs)
    assert read_item(ReceiveBuffer(data), xattrs.read) == 0
    receiving = Receiving(_opts(preserve_xattrs=1), _neg(), None, xattrs)
    receiving.am_root = am_root
    return receiving


def _entry(mode: int = stat.S_IFREG | 0o644) -> FileEntry:
    return FileEntry(name=b"f", mode=mode, xattr_ndx=0)


def test_non_root_leaves_other_namespaces_alone() -> None:
    receiving = _receiving([(b"trusted.t", b"T"), (b"user.u", b"new")], am_root=False)
    current = Stat(
        mode=stat.S_IFREG | 0o644,
        xattrs=((b"security.selinux", b"ctx"), (b"user.old", b"o"), (b"user.u", b"old")),
    )
    xattrs, _ = receiving.wanted(_entry(), current.mode, current)
    assert xattrs == ((b"security.selinux", b"ctx"), (b"user.u", b"new"))
    iflags, _ = receiving.itemize(_entry(), current, 0)
    assert iflags & ITEM_REPORT_XATTR


def test_values_not_known_yet_keep_the_files_until_the_answer() -> None:
    receiving = _receiving([(b"user.long", LONG), (b"user.s", b"s")])
    current = Stat(mode=stat.S_IFREG | 0o644, xattrs=((b"user.long", b"old"),))
    assert receiving.wanted(_entry(), current.mode, current)[0] == (
        (b"user.long", b"old"),
        (b"user.s", b"s"),
    )
    assert receiving.differ(_entry(), current)
    iflags, request = receiving.itemize(_entry(), current, 0)
    assert iflags & ITEM_REPORT_XATTR and request == b"\x01\x00"  # ask for item 1
    assert receiving.xattrs is not None
    receiving.xattrs.learn(receiving.xattrs.sets[0][0], LONG)
    assert receiving.wanted(_entry(), current.mode, current)[0] == (
        (b"user.long", LONG),
        (b"user.s", b"s"),
    )


def test_when_a_request_follows_a_record() -> None:
    receiving = _receiving([(b"user.long", LONG)])
    new = receiving.itemize(_entry(), None, ITEM_TRANSFER)
    assert new == (ITEM_TRANSFER | ITEM_REPORT_XATTR, b"\x01\x00")
    same = Stat(mode=stat.S_IFREG | 0o644, xattrs=((b"user.long", LONG),))
    assert receiving.itemize(_entry(), same, ITEM_TRANSFER) == (ITEM_TRANSFER, b"")
    hardlink = ITEM_REPORT_XATTR | ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS
    assert receiving.answer_follows(hardlink) and not receiving.sets_attrs_again(hardlink)
    receiving.optim = want_xattr_optim(_neg(31, 0))  # a client without 'x' at 31
    assert receiving.optim and not receiving.answer_follows(hardlink)
    dry = Receiving(_opts(preserve_xattrs=1, do_xfers=0), _neg(), None, receiving.xattrs)
    assert dry.itemize(_entry(), None, 0)[1] == b""  # a dry run asks for nothing


def test_acl_change_hides_p_only_where_rsync_set_the_mode_first() -> None:
    acls = AclReceiver()
    data = AclSender().encode(RsyncAcl(6, 4, 6, 0, (IdAccess(1, 6, True),)), None, 0o100660)
    assert read_item(ReceiveBuffer(data), lambda c: acls.read(c, 0o100660)) == (0, None)
    receiving = Receiving(_opts(preserve_acls=1), _neg(), acls, None)
    entry = FileEntry(name=b"f", mode=stat.S_IFREG | 0o660, acl_ndx=0)
    current = Stat(mode=stat.S_IFREG | 0o640)
    iflags, _ = receiving.itemize(entry, current, ITEM_REPORT_PERMS)
    assert iflags == ITEM_REPORT_ACL  # set_file_attrs ran first: no 'p'
    iflags, _ = receiving.itemize(entry, current, ITEM_REPORT_PERMS | ITEM_TRANSFER)
    assert iflags & ITEM_REPORT_PERMS  # itemized before the transfer: 'p' stays
    dry = Receiving(_opts(preserve_acls=1, dry_run=1), _neg(), acls, None)
    assert dry.itemize(entry, current, ITEM_REPORT_PERMS)[0] & ITEM_REPORT_PERMS


def test_acl_ids_are_mapped_by_name_and_named_for_the_lists() -> None:
    acls = AclReceiver()
    racl = RsyncAcl(None, 5, 7, None, (IdAccess(7000, 7, True), IdAccess(7001, 5, False)))
    data = AclSender().encode(racl, None, 0o100770)
    read_item(ReceiveBuffer(data), lambda c: acls.read(c, 0o100770))
    map_acl_ids(acls, {7000: b"root"}, {7001: b"no-such-group-here"})
    assert [ida.id for ida in acls.access[0].names] == [0, 7001]
    sender = AclSender()
    sender.encode(RsyncAcl(6, 4, 6, 0, (IdAccess(0, 6, True), IdAccess(0, 4, False))), None, 0)
    users, groups = acl_id_names(sender)
    assert users == {0: b"root"} and 0 in groups


@pytest.mark.parametrize(
    ("flag", "name"), [("preserve_acls", "--acls"), ("preserve_xattrs", "--xattrs")]
)
def test_protocol_29_is_refused(flag: str, name: str) -> None:
    check_protocol(_opts(**{flag: 1}), 30)
    with pytest.raises(ProtocolError, match=f"{name} requires protocol 30 or higher") as info:
        check_protocol(_opts(**{flag: 1}), 29)
    assert info.value.exit_code == 2
