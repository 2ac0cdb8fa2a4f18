"""Item records: an index plus the itemize flags that describe what happens to it.

The generator writes one record per item it reports or requests (generator.c itemize,
recv_generator): `ndx`, then at protocol 29+ `shortint iflags`, an optional basis-type
byte (ITEM_BASIS_TYPE_FOLLOWS) and an optional vstring name (ITEM_XNAME_FOLLOWS). The
sender echoes them, and for a transfer follows the record with the file's data. The
reading side is rsync.c read_ndx_and_attrs, which also meets the negative indexes
(NDX_DONE, NDX_DEL_STATS with its counts, incremental-list headers).
"""

from __future__ import annotations

from dataclasses import dataclass

from rsyncd_py.protocol.constants import (
    FNAMECMP_FNAME,
    ITEM_BASIS_TYPE_FOLLOWS,
    ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
    MAXPATHLEN,
    NDX_DEL_STATS,
)
from rsyncd_py.protocol.ints import Cursor, pack_byte, pack_shortint, pack_vstring
from rsyncd_py.protocol.ndx import NdxDecoder, NdxEncoder
from rsyncd_py.protocol.stats import DeleteStats

ITEM_MISSING_DATA = 1 << 16  # what a pre-29 record implies (no iflags on the wire)


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One decoded record for a file-list index."""

    ndx: int
    iflags: int
    basis_type: int = FNAMECMP_FNAME
    xname: bytes | None = None


def pack_item(
    ndx_encoder: NdxEncoder,
    ndx: int | None,
    iflags: int,
    *,
    basis_type: int = FNAMECMP_FNAME,
    xname: bytes | None = None,
) -> bytes:
    """Encode an item record.

    With `ndx` None the index is left out: rsync's itemize writes a transfer request's
    index itself before the record.
    """
    out = b"" if ndx is None else ndx_encoder.encode(ndx)
    if ndx_encoder.protocol < 29:
        return out
    out += pack_shortint(iflags)
    if iflags & ITEM_BASIS_TYPE_FOLLOWS:
        out += pack_byte(basis_type)
    if iflags & ITEM_XNAME_FOLLOWS:
        out += pack_vstring(xname or b"")
    return out


def read_ndx_and_attrs(cur: Cursor, ndx_decoder: NdxDecoder) -> ItemRecord | DeleteStats | int:
    """rsync.c read_ndx_and_attrs: the next record.

    Returns an ItemRecord for an index >= 0, the DeleteStats that follow NDX_DEL_STATS,
    or any other negative index as a plain int (NDX_DONE, NDX_FLIST_EOF, list headers)
    for the caller to judge.
    """
    ndx = ndx_decoder.read(cur)
    if ndx == NDX_DEL_STATS:
        return DeleteStats.read(cur)
    if ndx < 0:
        return ndx
    if ndx_decoder.protocol < 29:
        return ItemRecord(ndx, ITEM_TRANSFER | ITEM_MISSING_DATA)
    iflags = cur.shortint()
    basis_type = cur.byte() if iflags & ITEM_BASIS_TYPE_FOLLOWS else FNAMECMP_FNAME
    xname = cur.vstring(MAXPATHLEN) if iflags & ITEM_XNAME_FOLLOWS else None
    return ItemRecord(ndx, iflags, basis_type, xname)
