"""Replay real rsync clients' captured pushes into run_server.

A push of new files depends on the server only through what it requests, so the bytes a
real client sent to a real `rsync --server` (tests/data/protocol/core) are a valid client
side for us too. We feed them in (trickled and whole), let rsyncd-py write the tree,
and require that what it sends back is what the real server sent, byte for byte after
the setup exchange: the same item records, requests, deletions and NDX_DONE dance.
"""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from rsyncd_py.fs.local import LocalProvider
from rsyncd_py.session import run_server
from tests.data.protocol.core import tree
from tests.helpers.goldens import (
    client_flist_end,
    data_offset_after_first_done,
    load,
    split_server,
)
from tests.helpers.streams import memory_stream_pair

CASES = {
    "push-p32": 32,
    "push-p31-itemize": 31,
    "push-p30": 30,
    "push-p29": 29,
    "push-p27": 27,
    "push-delete-p32": 32,
}


async def replay(case: str, root: bytes, *, max_chunk: int | None) -> tuple[int, bytes]:
    protocol = CASES[case]
    golden = load(case)
    real = split_server(golden.s2c, protocol)
    # the whole-file MD4 of protocols < 30 is seeded: use the seed the capture had
    argv = [golden.argv[0], f"--checksum-seed={real.seed}", *golden.argv[1:]]
    server, client = memory_stream_pair(max_chunk=max_chunk, high_water=1 << 24)
    session = asyncio.create_task(run_server(server, argv, LocalProvider(root)))
    # Like a real client: the file list first; the file data only once the server has
    # asked for everything (its first NDX_DONE), so directories exist before contents.
    cut = client_flist_end(
        golden.c2s, protocol=protocol, negotiated=protocol >= 30, delete="delete" in case
    )
    client.write(golden.c2s[:cut])
    wanted = data_offset_after_first_done(real, protocol)
    async with asyncio.timeout(60):
        while data_so_far(bytes(client.incoming.buffer), protocol) < wanted:
            await asyncio.sleep(0.01)
    client.write(golden.c2s[cut:])
    await client.close()
    code = await asyncio.wait_for(session, 60)
    return code, bytes(client.incoming.buffer)


def data_so_far(stream: bytes, protocol: int) -> int:
    try:
        return len(split_server(stream, protocol).data)
    except AssertionError:  # the setup exchange is not complete yet
        return 0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("max_chunk", [None, 1], ids=["whole", "trickle"])
def test_replayed_push_matches_real_server(case, max_chunk, tmp_path):
    protocol = CASES[case]
    root = os.fsencode(tmp_path)
    if "delete" in case:
        tree.build(os.path.join(root, b"dst"), extra=True)
    code, ours = asyncio.run(replay(case, root, max_chunk=max_chunk))
    assert code == 0
    real = split_server(load(case).s2c, protocol)
    mine = split_server(ours, protocol)
    assert mine.version == real.version
    assert mine.names == real.names
    assert mine.data == real.data
    assert mine.messages == real.messages

    dst = os.path.join(root, b"dst")
    for name, data in tree.FILES.items():
        path = os.path.join(dst, name)
        with open(path, "rb") as f:
            assert f.read() == data
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == tree.MODES[name]
        expected_ns = tree.MTIME if protocol >= 31 else tree.MTIME // 10**9 * 10**9
        assert st.st_mtime_ns == expected_ns
    assert os.readlink(os.path.join(dst, b"link")) == b"a"
    assert os.path.isdir(os.path.join(dst, b"empty"))
    assert os.lstat(dst).st_mtime_ns // 10**9 == (tree.MTIME + 1) // 10**9
    for name in tree.EXTRA_IN_DEST:
        assert not os.path.exists(os.path.join(dst, name))
