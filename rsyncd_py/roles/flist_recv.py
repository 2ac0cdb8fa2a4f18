"""Receive the filter rules and the file list of a push.

Mirrors exclude.c recv_filter_list, flist.c recv_file_list and uidlist.c recv_id_list.

The receiving side reads, in order: the client's filter rules (only when it will need
them: --delete or --prune-empty-dirs), the file-list entries up to the end marker, the
uid and gid name lists, and below protocol 30 a trailing io_error int. The entries are
then sorted into index order with duplicates deactivated.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsyncd_py.protocol.acls import AclReceiver
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import IOERR_VALID_MASK
from rsyncd_py.protocol.filters import read_filter_list
from rsyncd_py.protocol.flist import FileEntry, FlistDecoder, FlistOptions, ListEnd
from rsyncd_py.protocol.flist_sort import sort_and_clean
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.idlist import read_id_list
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.options import ServerOptions
from rsyncd_py.protocol.xattrs import XattrReceiver
from rsyncd_py.roles.acl_xattr import map_acl_ids, new_receivers
from rsyncd_py.roles.ids import apply_names
from rsyncd_py.wire import Wire


@dataclass
class ReceivedList:
    """What the sender told us about the files."""

    entries: list[FileEntry]  # sorted; index == wire ndx
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


async def receive_file_list(
    wire: Wire, opts: ServerOptions, neg: Negotiated, filter_rules: list[bytes]
) -> ReceivedList:
    """Rsync flist.c:recv_file_list for a non-incremental list."""
    options = flist_options(opts, neg)
    acls, xattrs = new_receivers(opts)
    decoder = FlistDecoder(options, acls=acls, xattrs=xattrs)
    while True:
        item = await wire.read(lambda buf: read_item(buf, decoder.read))
        if isinstance(item, ListEnd):
            io_error = item.io_error
            break
    users: dict[int, bytes] = {}
    groups: dict[int, bytes] = {}
    protocol = neg.protocol
    if not options.inc_recurse:
        # -A sends both lists (the ids its entries name) even without -o/-g
        if (options.preserve_uid or options.preserve_acls) and not options.numeric_ids:
            users = await wire.read(
                lambda buf: read_item(
                    buf, lambda cur: read_id_list(cur, protocol, id0_names=options.id0_names)
                )
            )
        if (options.preserve_gid or options.preserve_acls) and not options.numeric_ids:
            groups = await wire.read(
                lambda buf: read_item(
                    buf, lambda cur: read_id_list(cur, protocol, id0_names=options.id0_names)
                )
            )
    apply_names(decoder.entries, users, groups)
    if decoder.acls is not None and not options.numeric_ids:
        map_acl_ids(decoder.acls, users, groups)
    entries = sort_and_clean(decoder.entries, protocol)
    if protocol < 30:
        io_error |= await wire.read(_read_int)
    return ReceivedList(
        entries, io_error & IOERR_VALID_MASK, filter_rules, decoder.acls, decoder.xattrs
    )


def _read_int(buf: ReceiveBuffer) -> int | None:
    return read_item(buf, lambda cur: cur.int32())
