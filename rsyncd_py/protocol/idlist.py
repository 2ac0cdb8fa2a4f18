"""The uid and gid name lists that follow a non-incremental file list (uidlist.c).

Each list is a run of (varint30 id, byte length, name) records ending with id 0; with
CF_ID0_NAMES the terminating 0 is followed by the name of id 0 (a byte length and the
name). The uid list comes first, then the gid list; each is present only when that id
is preserved and --numeric-ids is off. Below protocol 30 an `int io_error` follows the
lists (flist.c recv_file_list) -- that belongs to the list's end and is read by the
caller.
"""

from __future__ import annotations

from collections.abc import Iterable

from rsyncd_py.protocol.ints import Cursor, pack_byte, pack_varint30


def read_id_list(cur: Cursor, protocol: int, *, id0_names: bool) -> dict[int, bytes]:
    """uidlist.c recv_id_list (one list): id -> name (ids with an empty name omitted)."""
    names: dict[int, bytes] = {}
    while True:
        ident = cur.varint30(protocol)
        if ident == 0:
            break
        name = cur.take(cur.byte())
        if name:
            names[ident & 0xFFFFFFFF] = name
    if id0_names:
        name = cur.take(cur.byte())
        if name:
            names[0] = name
    return names


def pack_id_list(names: Iterable[tuple[int, bytes]], protocol: int, *, id0_names: bool) -> bytes:
    """uidlist.c send_one_list: the (id, name) pairs, terminated as the peer expects."""
    out: list[bytes] = []
    id0_name = b""
    for ident, name in names:
        if ident == 0:
            id0_name = name
            continue
        short = name[:255]
        out.append(pack_varint30(ident, protocol) + pack_byte(len(short)) + short)
    out.append(pack_varint30(0, protocol))
    if id0_names:
        out.append(pack_byte(len(id0_name[:255])) + id0_name[:255])
    return b"".join(out)
