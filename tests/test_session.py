"""run_server's failure paths: every bad input ends the session with rsync's text and code.

The client side is a memory stream fed with refusals, garbage, or a real client's
captured push cut short; the file system is a LocalProvider wrapped to record whether the
session committed (`close(True)`) or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random

import pytest

from rsyncd_py.fs.local import LocalProvider
from rsyncd_py.protocol.constants import MSG_DATA, MSG_ERROR_EXIT
from rsyncd_py.protocol.mux import pack_frame
from rsyncd_py.session import run_server
from tests.helpers.goldens import (
    client_flist_end,
    data_offset_after_first_done,
    load,
    split_server,
)
from tests.helpers.streams import memory_stream_pair


class RecordingProvider:
    """A LocalProvider that remembers how each session's file system was closed."""

    def __init__(self, root: bytes) -> None:
        self.inner = LocalProvider(root)
        self.closed: list[bool] = []

    async def open_session(self, *, writable: bool, user: str | None = None):
        fs = await self.inner.open_session(writable=writable, user=user)
        closed = self.closed
        real_close = fs.close

        async def close(success: bool) -> None:
            closed.append(success)
            await real_close(success)

        fs.close = close  # type: ignore[method-assign]
        return fs

    async def aclose(self) -> None:
        await self.inner.aclose()


async def serve(argv, client_bytes: bytes, root: bytes, *, close_input: bool = True):
    server, client = memory_stream_pair()
    provider = RecordingProvider(root)
    client.write(client_bytes)
    if close_input:
        await client.close()
    code = await asyncio.wait_for(run_server(server, argv, provider), 60)
    return code, bytes(client.incoming.buffer), server.stderr.decode(), provider.closed


PUSH = ["--server", "-logDtpre.LsfxCIvu", ".", "dst/"]


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (
            ["--server", "--bogus-opt", ".", "dst/"],
            1,
            "rsync: on remote machine: --bogus-opt: unknown option",
        ),
        (["--server", "-logDtpNre.LsfxCIvu", ".", "dst/"], 1, "does not support --crtimes"),
        (["--server", "--daemon", "."], 4, "daemon mode over a remote shell"),
    ],
)
def test_refused_before_any_protocol_byte(argv, code, text, tmp_path):
    got, out, err, closed = asyncio.run(serve(argv, b"", os.fsencode(tmp_path)))
    assert got == code
    assert out == b""  # not even the version: the client reports a closed connection
    assert text in err
    assert f"(code {code})" in err
    assert closed == []


def test_http_request_is_not_rsync(tmp_path):
    code, _, err, closed = asyncio.run(
        serve(PUSH, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.fsencode(tmp_path))
    )
    assert code == 2
    assert "protocol version mismatch -- is your shell clean?" in err
    assert closed == []


@pytest.mark.parametrize("seed", range(30))
def test_garbage_after_the_handshake_ends_cleanly(seed, tmp_path):
    rnd = random.Random(seed)
    golden = load("push-p32")
    keep = rnd.randrange(4, 120)  # a valid start, then noise
    noise = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 400)))
    code, _, err, closed = asyncio.run(
        serve(PUSH, golden.c2s[:keep] + noise, os.fsencode(tmp_path))
    )
    assert code in (1, 2, 3, 4, 11, 12, 23)  # rsync's codes for protocol/stream/file trouble
    assert "Traceback" not in err and "internal error" not in err
    assert closed in ([], [False], [True])
    assert f"(code {code})" in err or closed == [True]


def test_client_killed_mid_push_commits_nothing(tmp_path):
    golden = load("push-p32")
    cut = client_flist_end(golden.c2s, protocol=32, negotiated=True, delete=False)
    code, _, err, closed = asyncio.run(serve(PUSH, golden.c2s[:cut], os.fsencode(tmp_path)))
    assert code == 12
    assert "connection unexpectedly closed" in err
    assert closed == [False]


def test_client_error_exit_is_acknowledged(tmp_path):
    golden = load("push-p32")
    cut = client_flist_end(golden.c2s, protocol=32, negotiated=True, delete=False)
    abort = pack_frame(MSG_ERROR_EXIT, (23).to_bytes(4, "little"))
    code, out, _, closed = asyncio.run(serve(PUSH, golden.c2s[:cut] + abort, os.fsencode(tmp_path)))
    assert code == 23
    assert pack_frame(MSG_ERROR_EXIT, (23).to_bytes(4, "little")) in out  # echoed at 31+
    assert closed == [False]


def test_destination_escaping_the_root_is_refused(tmp_path):
    golden = load("push-p32")
    argv = ["--server", "-logDtpre.LsfxCIvu", ".", "../outside/"]
    code, out, err, closed = asyncio.run(serve(argv, golden.c2s, os.fsencode(tmp_path)))
    assert code == 3
    assert "escapes the served tree: ../outside/" in err
    assert pack_frame(MSG_ERROR_EXIT, (3).to_bytes(4, "little")) in out
    assert not os.path.exists(tmp_path.parent / "outside")
    assert closed == [False]


def test_keepalive_frames_are_ignored(tmp_path):
    golden = load("push-p32")
    cut = client_flist_end(golden.c2s, protocol=32, negotiated=True, delete=False)
    keepalives = pack_frame(MSG_DATA, b"") * 3
    wanted = data_offset_after_first_done(split_server(golden.s2c, 32), 32)

    async def main():
        server, client = memory_stream_pair()
        provider = RecordingProvider(os.fsencode(tmp_path))
        session = asyncio.create_task(run_server(server, PUSH, provider))
        client.write(golden.c2s[:cut] + keepalives)
        # like a real client, send the file data only once the server asked for it
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(AssertionError):
                    if len(split_server(bytes(client.incoming.buffer), 32).data) >= wanted:
                        break
                await asyncio.sleep(0.01)
        client.write(keepalives + golden.c2s[cut:])
        await client.close()
        return await asyncio.wait_for(session, 60), server.stderr.decode(), provider.closed

    code, err, closed = asyncio.run(main())
    assert code == 0, err
    assert closed == [True]
