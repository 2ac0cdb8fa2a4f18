"""Read the core-protocol goldens in tests/data/protocol/core (see make_captures.sh).

`load(case)` returns the remote argv and both byte streams; `split_server` and
`split_client` cut a stream into its setup part and its (demultiplexed) body, so tests
can compare what real rsync and rsyncd-py put on the wire piece by piece.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import CF_VARINT_FLIST_FLAGS
from rsyncd_py.protocol.ints import Cursor, read_item
from rsyncd_py.protocol.mux import Data, Demuxer

CORE = Path(__file__).resolve().parent.parent / "data" / "protocol" / "core"


@dataclass
class Golden:
    argv: list[str]  # from "--server" on
    c2s: bytes
    s2c: bytes


def load(case: str) -> Golden:
    command = (CORE / f"{case}.cmd").read_text().strip()
    words = shlex.split(command)
    return Golden(
        argv=words[words.index("--server") :],
        c2s=(CORE / f"{case}.c2s").read_bytes(),
        s2c=(CORE / f"{case}.s2c").read_bytes(),
    )


@dataclass
class ServerStream:
    version: int
    compat_flags: int | None
    names: list[bytes]
    seed: int
    data: bytes  # the demultiplexed MSG_DATA stream after the seed
    messages: list[tuple[int, bytes]] = field(default_factory=list)


def split_server(stream: bytes, protocol: int, *, compressing: bool = False) -> ServerStream:
    """Cut what a server wrote into its setup fields and its multiplexed body."""
    buf = ReceiveBuffer(stream)
    version = read_item(buf, Cursor.int32)
    assert version is not None
    flags = None
    names: list[bytes] = []
    if protocol >= 30:
        flags = read_item(buf, Cursor.varint)
        assert flags is not None
        if flags & CF_VARINT_FLIST_FLAGS:
            for _ in range(2 if compressing else 1):
                names.append(read_item(buf, lambda c: c.vstring(1 << 15)))
    seed = read_item(buf, Cursor.int32)
    assert seed is not None
    data, messages = demux(buf.take_all())
    return ServerStream(version, flags, names, seed, data, messages)


def demux(stream: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    data = bytearray()
    messages = []
    for event in Demuxer().feed(stream):
        if isinstance(event, Data):
            data += event.data
        else:
            messages.append((event.tag, event.payload))
    return bytes(data), messages


def client_body(stream: bytes, *, protocol: int, negotiated: bool) -> bytes:
    """The client's logical data after its version (and name list), demultiplexed at 30+."""
    buf = ReceiveBuffer(stream)
    assert read_item(buf, Cursor.int32) is not None
    if negotiated:
        assert read_item(buf, lambda c: c.vstring(1 << 15)) is not None
    rest = buf.take_all()
    return demux(rest)[0] if protocol >= 30 else rest


def client_flist_end(stream: bytes, *, protocol: int, negotiated: bool, delete: bool) -> int:
    """The offset in the raw client stream just past its file list (and id lists).

    A replaying test feeds the client's bytes up to here first and the rest only once
    the server has answered the list, as a real client would.
    """
    from rsyncd_py.protocol.flist import FlistDecoder, FlistOptions, ListEnd
    from rsyncd_py.protocol.idlist import read_id_list

    buf = ReceiveBuffer(stream)
    read_item(buf, Cursor.int32)
    if negotiated:
        read_item(buf, lambda c: c.vstring(1 << 15))
    prefix = len(stream) - len(buf)
    body = client_body(stream, protocol=protocol, negotiated=negotiated)
    data = ReceiveBuffer(body)
    if delete:
        while read_item(data, Cursor.int32):  # the filter list, up to its 0 terminator
            pass
    decoder = FlistDecoder(
        FlistOptions(
            protocol=protocol,
            varint_flags=negotiated,
            safe_flist=protocol >= 31,
            preserve_uid=True,
            preserve_gid=True,
            preserve_links=True,
            preserve_devices=True,
            preserve_specials=True,
        )
    )
    while not isinstance(read_item(data, decoder.read), ListEnd):
        pass
    for _ in range(2):
        read_item(data, lambda c: read_id_list(c, protocol, id0_names=protocol >= 30))
    if protocol < 30:
        read_item(data, Cursor.int32)  # the io_error int
    consumed = len(body) - len(data)
    if protocol < 30:
        return prefix + consumed
    # walk the frames until they have carried `consumed` data bytes
    pos, carried = prefix, 0
    while carried < consumed:
        header = int.from_bytes(stream[pos : pos + 4], "little")
        length = header & 0xFFFFFF
        if header >> 24 == 7:  # MSG_DATA
            carried += length
        pos += 4 + length
    return pos


def data_offset_after_first_done(server: ServerStream, protocol: int) -> int:
    """Where the generator's first NDX_DONE (end of the request pass) ends in its data."""
    from rsyncd_py.protocol.constants import NDX_DONE
    from rsyncd_py.protocol.itemize import ItemRecord, read_ndx_and_attrs
    from rsyncd_py.protocol.ndx import NdxDecoder
    from rsyncd_py.protocol.sums import read_sum_head

    ndx = NdxDecoder(protocol)
    buf = ReceiveBuffer(server.data)
    while True:
        record = read_item(buf, lambda c: read_ndx_and_attrs(c, ndx))
        if record == NDX_DONE:
            return len(server.data) - len(buf)
        if (isinstance(record, ItemRecord) and record.iflags & 0x8000) or protocol < 29:
            read_item(buf, lambda c: read_sum_head(c, protocol=protocol, xfer_sum_len=16))
