"""A whole pull session against a scripted protocol-29 client, fed a byte at a time.

At protocol 29 the client's side is plain (unmultiplexed) and fixed in advance: its
version, an empty filter list, one whole-file request, the NDX_DONE of each phase and
the goodbye. The server's multiplexed answer is decoded with the codec and checked
field by field against rsync-protocol.md A.9-A.14: the file list with its id lists and
io_error int, the echoed record and sum head, the literal data, the seeded MD4
whole-file checksum, two phase echoes plus the final NDX_DONE, and five longint stats.
Malformed requests (an index out of range, a transfer asked for in phase 2) end the
session with rsync's text and exit code 2.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from rsyncd_py.fs.local import LocalProvider
from rsyncd_py.protocol import checksums, tokens
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import ITEM_IS_NEW, ITEM_TRANSFER
from rsyncd_py.protocol.flist import FlistDecoder, FlistOptions, ListEnd
from rsyncd_py.protocol.idlist import read_id_list
from rsyncd_py.protocol.ints import pack_int, pack_shortint, read_item
from rsyncd_py.protocol.mux import Data, Demuxer
from rsyncd_py.protocol.stats import TransferStats
from rsyncd_py.session import run_server
from tests.helpers.streams import memory_stream_pair
from tests.helpers.trees import write_file

PROTOCOL = 29
ARGV = ["--server", "--sender", "-logDtpr", ".", "src/"]
DONE = pack_int(-1)
WHOLE_FILE = pack_int(0) * 4  # sum head: count, blength, s2length, remainder


def request(ndx: int) -> bytes:
    return pack_int(ndx) + pack_shortint(ITEM_TRANSFER | ITEM_IS_NEW) + WHOLE_FILE


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write_file(root / "src" / "a", b"alpha " * 10_000, 1_600_000_000_000_000_000)
    write_file(root / "src" / "b", b"", 1_600_000_000_000_000_000)
    return root


async def _session(
    root: Path, client_script: bytes, max_chunk: int | None
) -> tuple[int, bytes, bytes]:
    client, server = memory_stream_pair(max_chunk=max_chunk, high_water=1 << 30)
    client.write(pack_int(PROTOCOL) + client_script)
    await client.close()
    code = await run_server(server, ARGV, LocalProvider(os.fsencode(root)))
    return code, bytes(client.incoming.buffer), bytes(server.stderr)


def run(root: Path, client_script: bytes, max_chunk: int | None = None) -> tuple[int, bytes, bytes]:
    return asyncio.run(asyncio.wait_for(_session(root, client_script, max_chunk), 60))


def data_stream(output: bytes) -> tuple[int, int, ReceiveBuffer]:
    """(server version, seed, the demultiplexed data after them)."""
    version = int.from_bytes(output[:4], "little")
    seed = int.from_bytes(output[4:8], "little", signed=True)
    events = Demuxer().feed(output[8:])
    data = b"".join(e.data for e in events if isinstance(e, Data))
    return version, seed, ReceiveBuffer(data)


@pytest.mark.parametrize("max_chunk", [None, 1], ids=["whole", "trickled"])
def test_a_whole_pull_session(served: Path, max_chunk: int | None) -> None:
    script = pack_int(0) + request(1) + DONE + DONE + DONE + DONE  # filters, a, F P1 D, G
    code, output, stderr = run(served, script, max_chunk)
    assert code == 0, stderr
    version, seed, buf = data_stream(output)
    assert version == 32

    options = FlistOptions(
        protocol=PROTOCOL,
        preserve_uid=True,
        preserve_gid=True,
        preserve_links=True,
        preserve_devices=True,
        preserve_specials=True,
    )
    decoder = FlistDecoder(options)
    while not isinstance(read_item(buf, decoder.read), ListEnd):
        pass
    names = [e.name for e in decoder.entries]
    assert sorted(names) == [b".", b"a", b"b"]
    assert all(stat.S_ISDIR(e.mode) == (e.name == b".") for e in decoder.entries)
    for _ in range(2):  # uid and gid lists
        assert read_item(buf, lambda cur: read_id_list(cur, PROTOCOL, id0_names=False)) is not None
    assert read_item(buf, lambda cur: cur.int32()) == 0  # io_error

    ndx, iflags = read_item(buf, lambda cur: (cur.int32(), cur.shortint()))  # type: ignore[misc]
    assert (ndx, iflags) == (1, ITEM_TRANSFER | ITEM_IS_NEW)
    assert buf.take(16) == WHOLE_FILE
    content = (served / "src" / "a").read_bytes()
    decoder_t = tokens.new_token_decoder("none")
    received = bytearray()
    while (token := decoder_t.next_token(buf)) is not tokens.END:
        assert isinstance(token, tokens.Literal) and len(token.data) <= tokens.CHUNK_SIZE
        received += token.data
    assert received == content
    hasher = checksums.new_file_hasher("md4", protocol=PROTOCOL, seed=seed)
    hasher.update(content)
    assert buf.take(16) == hasher.digest()

    for _ in range(3):  # the phase-1 and phase-2 echoes, then the sender's final NDX_DONE
        assert read_item(buf, lambda cur: cur.int32()) == -1
    stats = read_item(buf, lambda cur: TransferStats.read(cur, PROTOCOL))
    assert stats is not None and stats.total_size == len(content)
    assert len(buf) == 0


def test_index_out_of_range_is_a_protocol_error(served: Path) -> None:
    code, _, stderr = run(served, pack_int(0) + request(99))
    assert code == 2
    assert b"Invalid file index: 99 (-1 - 2) [sender]" in stderr


def test_transfer_in_phase_two_is_refused(served: Path) -> None:
    code, _, stderr = run(served, pack_int(0) + DONE + DONE + request(1))
    assert code == 2
    assert b"got transfer request in phase 2 [sender]" in stderr


def test_client_hanging_up_mid_session_ends_it(served: Path) -> None:
    code, _, _ = run(served, pack_int(0) + request(1)[:5])
    assert code == 12  # RERR_STREAMIO: "connection unexpectedly closed"
