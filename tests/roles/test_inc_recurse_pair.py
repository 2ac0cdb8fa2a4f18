"""Our incremental sender against our incremental receiver, over in-memory streams.

The sender role (a pull's server side) is also exactly what a pushing client runs, less
the stats it writes as a server. So a push can be played entirely in-process: a small
client half of the setup exchange, then `Sender.send_file_list` / `send_files_loop` /
`read_final_goodbye` on one end of a `memory_stream_pair` and `run_server` (generator
and receiver) on the other. The sender keeps only ~1000 files of lists ahead of the
generator's requests and needs the generator's NDX_DONEs to go on, so a generator that
waited for more of the list than it has would hang here (oferchen/rsync PR #5677) --
and the streams trickle (a few bytes per read) and stall (one direction held back for
a while, again and again), which is how ordering bugs and deadlocks show. Each run must
end, both sides with exit code 0, and leave the source tree at the destination.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from rsyncd_py.fs.local import LocalProvider
from rsyncd_py.protocol import handshake
from rsyncd_py.protocol.constants import CF_INC_RECURSE
from rsyncd_py.protocol.ints import Cursor, read_item
from rsyncd_py.protocol.options import parse_server_args
from rsyncd_py.roles.sender import Sender
from rsyncd_py.session import run_server
from rsyncd_py.wire import Wire
from tests.helpers.streams import MemoryStream, memory_stream_pair
from tests.helpers.trees import assert_same_tree, snapshot, write_file

WHEN = 1_500_000_000_000_000_000
CLIENT_INFO = "-logDtpre.iLsfxCIvu"


def build(src: Path, *, wide: int, dirs: int, per_dir: int, depth: int) -> None:
    for i in range(wide):
        write_file(src / "wide" / f"w{i:05}", b"%d" % i, WHEN)
    for d in range(dirs):
        for f in range(per_dir):
            write_file(src / f"d{d:03}" / "s" / f"f{f:03}", b"x" * (f % 11), WHEN)
        (src / f"d{d:03}" / "empty").mkdir(parents=True)
    chain = src / "chain"
    for level in range(depth):
        chain = chain / f"c{level}"
    write_file(chain / "end", b"end", WHEN)
    if wide > 7 and per_dir:
        os.link(src / "wide" / "w00007", src / "d000" / "s" / "also-w7")
    for path in [*sorted(src.rglob("*"), reverse=True), src]:
        if path.is_dir():
            os.utime(path, ns=(WHEN, WHEN))


async def client_setup(wire: Wire, client: list[str]) -> handshake.Negotiated:
    """The client half of compat.c setup_protocol, for protocol 32."""
    wire.write(handshake.pack_version(32))
    version = await wire.read(lambda buf: read_item(buf, Cursor.int32))
    flags = await wire.read(lambda buf: read_item(buf, Cursor.varint))
    assert version == 32 and flags & CF_INC_RECURSE
    server_names = await wire.read(lambda buf: read_item(buf, handshake.read_name_list))
    wire.write(handshake.pack_name_list(client))
    seed = await wire.read(lambda buf: read_item(buf, Cursor.int32))
    wire.start_multiplex_out()
    wire.start_multiplex_in()
    checksum = handshake.choose_name(client, server_names)
    assert checksum is not None
    return handshake.Negotiated(
        protocol=32,
        compat_flags=flags,
        checksum=checksum,
        file_checksum=checksum,
        compression="none",
        seed=seed,
    )


async def _no_more() -> None:
    return None


async def push(
    src_root: Path, dst_root: Path, extra: list[str], stream_options: dict, *, strict: bool
) -> None:
    client_stream, server_stream = memory_stream_pair(**stream_options)
    argv = ["--server", CLIENT_INFO, *extra, ".", "dst/"]
    server = asyncio.create_task(run_server(server_stream, argv, LocalProvider(bytes(dst_root))))
    stall = asyncio.create_task(stall_now_and_then(client_stream))
    wire = Wire(client_stream)
    try:
        neg = await client_setup(wire, ["xxh128", "md5"])
        opts = parse_server_args(["--server", "--sender", CLIENT_INFO, *extra, ".", "src/"])
        fs = await LocalProvider(bytes(src_root)).open_session(writable=False)
        sender = Sender(wire, fs, opts, neg)
        assert await sender.send_file_list([])
        assert sender.extra is not None
        if strict:  # only MIN_FILECNT_LOOKAHEAD ahead, never more while waiting
            sender.extra.send_while_idle = _no_more  # type: ignore[method-assign]
        await sender.send_files_loop()
        await wire.flush()
        await sender.read_final_goodbye()  # a client sender writes no stats
        await wire.flush()
        assert sender.exit_code() == 0
        assert await server == 0, server_stream.stderr.decode(errors="replace")
    finally:
        stall.cancel()
        await wire.close()


async def stall_now_and_then(stream: MemoryStream) -> None:
    """Hold one direction or the other back for a moment, again and again."""
    rng = random.Random(7)
    pipes = (stream.incoming, stream.outgoing)
    while True:
        await asyncio.sleep(rng.uniform(0.001, 0.02))
        pipe = rng.choice(pipes)
        pipe.stall()
        await asyncio.sleep(rng.uniform(0.001, 0.01))
        pipe.resume()


@pytest.mark.parametrize(
    ("shape", "extra", "stream_options"),
    [
        pytest.param(
            {"wide": 1500, "dirs": 40, "per_dir": 30, "depth": 30},
            [],
            {"high_water": 1 << 16},
            id="big-tree",
        ),
        pytest.param(
            {"wide": 1100, "dirs": 12, "per_dir": 5, "depth": 5},
            ["-H"],
            {"max_chunk": 7, "high_water": 1 << 12},
            id="trickled-hard-links",
        ),
        pytest.param(
            {"wide": 0, "dirs": 300, "per_dir": 0, "depth": 60},
            [],
            {"max_chunk": 3, "high_water": 1 << 10},
            id="trickled-empty-dirs",
        ),
    ],
)
def test_our_sender_and_receiver_agree(
    tmp_path: Path, shape: dict[str, int], extra: list[str], stream_options: dict
) -> None:
    src_root, dst_root = tmp_path / "client", tmp_path / "server"
    build(src_root / "src", **shape)
    dst_root.mkdir()
    strict = "max_chunk" not in stream_options
    run = push(src_root, dst_root, extra, stream_options, strict=strict)
    asyncio.run(asyncio.wait_for(run, 240))
    ignore = set() if "-H" in extra else {"links"}
    assert_same_tree(snapshot(src_root / "src"), snapshot(dst_root / "dst"), ignore=ignore)
