"""The sender's parts on real files: name cleaning, globbing, file-list names, the delta.

- `clean_fname` against rsync's util1.c results;
- `expand_args` against what sh expands on the same directory;
- `FileListBuilder` over a LocalFileSystem: the names, order and top/implied/content
  flags rsync's send_file_list gives each argument form;
- `DeltaSender.match_sums` through a real Wire: the bytes it writes, decoded by the
  receiver's token decoder for every compressor, rebuild the new file from the basis
  and carry the right whole-file checksum; a recorded digest is sent as recorded.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from pathlib import Path

import pytest

from rsyncd_py.fs.local import LocalFileSystem
from rsyncd_py.protocol import checksums, tokens
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.flist import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FLAG_TOP_DIR,
    FlistOptions,
)
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.match import BlockSums
from rsyncd_py.protocol.sums import sum_sizes_sqroot
from rsyncd_py.roles.delta_send import DeltaSender
from rsyncd_py.roles.flist_build import FileListBuilder, SendEntry
from rsyncd_py.roles.globbing import expand_args
from rsyncd_py.roles.sender import recorded_digest
from rsyncd_py.roles.source_args import clean_fname
from rsyncd_py.wire import Wire
from tests.helpers.streams import memory_stream_pair
from tests.helpers.trees import write_file


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        (b"a//b", b"a/b"),
        (b"./a/./b", b"a/b"),
        (b"a/b/", b"a/b/"),
        (b"a/.", b"a/"),
        (b"/", b"/"),
        (b"/./x", b"/x"),
        (b".", b"."),
        (b"", b"."),
        (b"a/../b", b"a/../b"),  # ".." is kept (and refused by the caller)
    ],
)
def test_clean_fname_keeps_a_trailing_slash_and_drops_dot_dirs(name: bytes, cleaned: bytes) -> None:
    assert clean_fname(name, keep_trailing_slash=True, drop_trailing_dot=True) == cleaned


# -- globbing -------------------------------------------------------------------------


@pytest.fixture
def glob_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in ("logs/a.log", "logs/b.log", "logs/.hidden.log", "logs/c.txt", "d1/x", "d2/y"):
        write_file(root / rel, b"x", 1_600_000_000_000_000_000)
    (root / "dfile").write_bytes(b"not a dir")
    return root


@pytest.mark.parametrize(
    "pattern", ["logs/*.log", "logs/.*", "d*/", "d*/?", "logs/[ab].log", "nothing*", "logs/*"]
)
def test_globbing_matches_sh(glob_tree: Path, pattern: str) -> None:
    shell = subprocess.run(
        ["sh", "-c", f"for f in {pattern}; do printf '%s\\n' \"$f\"; done"],
        cwd=glob_tree,
        capture_output=True,
        check=True,
    )
    fs = LocalFileSystem(os.fsencode(glob_tree), read_only=True)
    ours = asyncio.run(expand_args(fs, b"", [pattern.encode()], shell=True))
    expected = [line for line in shell.stdout.split(b"\n") if line]
    # sh's .* also yields . and .. (dash does); those never name a file to send
    assert ours == [e for e in expected if e.rpartition(b"/")[2] not in (b".", b"..")]


def test_secluded_args_glob_like_rsync(glob_tree: Path) -> None:
    """rsync's own glob_expand (-s) lets * match dot files."""
    fs = LocalFileSystem(os.fsencode(glob_tree), read_only=True)
    got = asyncio.run(expand_args(fs, b"", [b"logs/*.log"], shell=False))
    assert got == [b"logs/.hidden.log", b"logs/a.log", b"logs/b.log"]


# -- file-list names ------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    for rel in ("top/a", "top/sub/b", "top/sub/deeper/c", "other/d"):
        write_file(root / rel, b"data", 1_600_000_000_000_000_000)
    return root


def build(
    root: Path, args: list[bytes], *, recurse: bool = True, relative: bool = False
) -> list[SendEntry]:
    async def run() -> list[SendEntry]:
        _client, server = memory_stream_pair()
        wire = Wire(server)
        fs = LocalFileSystem(os.fsencode(root), read_only=True)
        options = FlistOptions(protocol=31, relative_paths=relative, preserve_links=True)
        builder = FileListBuilder(
            wire,
            fs,
            options,
            recurse=recurse,
            xfer_dirs=True,
            implied_dirs=True,
            filters=None,
            emit=lambda sent: None,
            recorded_digest=recorded_digest,
            file_checksum="md5",
        )
        await builder.build(b"", args)
        assert builder.io_error == 0
        return builder.entries

    return asyncio.run(run())


def names_and_kinds(entries: list[SendEntry]) -> list[tuple[bytes, str]]:
    def kind(flags: int) -> str:
        return "".join(
            letter
            for bit, letter in (
                (FLAG_TOP_DIR, "T"),
                (FLAG_CONTENT_DIR, "C"),
                (FLAG_IMPLIED_DIR, "I"),
            )
            if flags & bit
        )

    return [(s.entry.name, kind(s.entry.flags)) for s in entries]


def test_trailing_slash_sends_dot_and_the_contents(served: Path) -> None:
    assert names_and_kinds(build(served, [b"top/"])) == [
        (b".", "TC"),
        (b"a", ""),
        (b"sub", "C"),
        (b"sub/b", ""),
        (b"sub/deeper", "C"),
        (b"sub/deeper/c", ""),
    ]


def test_no_trailing_slash_sends_the_directory_itself(served: Path) -> None:
    got = names_and_kinds(build(served, [b"top"]))
    assert got[:3] == [(b"top", "TC"), (b"top/a", ""), (b"top/sub", "C")]


def test_dirs_without_recursion_list_one_level(served: Path) -> None:
    got = names_and_kinds(build(served, [b"top/"], recurse=False))
    assert got == [(b".", "TC"), (b"a", ""), (b"sub", "")]


def test_relative_sends_implied_parents_once(served: Path) -> None:
    got = names_and_kinds(build(served, [b"top/sub/b", b"top/sub/deeper"], relative=True))
    assert got == [
        (b"top", "I"),
        (b"top/sub", "I"),
        (b"top/sub/b", "T"),
        (b"top/sub/deeper", "TC"),
        (b"top/sub/deeper/c", ""),
    ]


def test_relative_marker_cuts_the_path(served: Path) -> None:
    got = names_and_kinds(build(served, [b"top/./sub/deeper"], relative=True))
    assert got == [(b"sub", "I"), (b"sub/deeper", "TC"), (b"sub/deeper/c", "")]


# -- the delta ------------------------------------------------------------------------


def _negotiated(compression: str, checksum: str = "xxh128") -> Negotiated:
    return Negotiated(
        protocol=31,
        compat_flags=0x20,
        checksum=checksum,
        file_checksum=checksum,
        compression=compression,
        seed=123456,
    )


def _sums(basis: bytes, neg: Negotiated) -> BlockSums:
    head = sum_sizes_sqroot(len(basis), protocol=31, xfer_sum_len=16)
    weak = checksums.weak_block_sums(basis, head.blength)
    strong = checksums.strong_block_sums(
        neg.checksum, basis, head.blength, head.s2length, protocol=31, seed=neg.seed, seed_fix=True
    )
    return BlockSums(head.count, head.blength, head.s2length, head.remainder, weak, strong)


class _BytesReader:
    def __init__(self, data: bytes, digests: dict[str, bytes] | None = None) -> None:
        self.data = data
        self.size = len(data)
        if digests is not None:
            self.digests = digests

    async def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    async def stream(self, chunk_size: int = 1 << 20):  # type: ignore[no-untyped-def]
        for offset in range(0, len(self.data), chunk_size):
            yield self.data[offset : offset + chunk_size]

    async def close(self) -> None:
        pass


def _send(neg: Negotiated, basis: bytes, new: bytes, reader: _BytesReader) -> tuple[bytes, int]:
    """The wire bytes match_sums writes for `new` (and the literal byte count)."""

    async def run() -> tuple[bytes, int]:
        client, server = memory_stream_pair(high_water=1 << 30)
        wire = Wire(server)
        encoder = tokens.new_token_encoder(neg.compression, None, protocol=neg.protocol)
        sender = DeltaSender(wire, neg, encoder)
        failure = await sender.match_sums(
            reader, _sums(basis, neg), recorded_digest(reader, neg.checksum)
        )
        assert failure is None
        await wire.flush()
        return bytes(client.incoming.buffer), sender.literal_data

    return asyncio.run(run())


def _rebuild(neg: Negotiated, basis: bytes, wire_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    """Apply the token stream to `basis` as receiver.c does: (file, sent sum, our sum)."""
    sums = _sums(basis, neg)
    decoder = tokens.new_token_decoder(neg.compression, protocol=neg.protocol)
    decoder.start_file()
    buf = ReceiveBuffer(wire_bytes)
    out = bytearray()
    while (token := decoder.next_token(buf)) is not tokens.END:
        assert token is not None
        if isinstance(token, tokens.Literal):
            out += token.data
        else:
            offset = token.index * sums.blength
            block = basis[offset : offset + sums.block_len(token.index)]
            decoder.see_match(block)
            out += block
    sent_sum = buf.take(16)
    assert sent_sum is not None and len(buf) == 0
    hasher = checksums.new_file_hasher(neg.checksum, protocol=neg.protocol, seed=neg.seed)
    hasher.update(bytes(out))
    return bytes(out), sent_sum, hasher.digest()


def _changed(basis: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    data = bytearray(basis)
    for _ in range(20):
        at = rng.randrange(len(data) - 4096)
        data[at : at + 4096] = rng.randbytes(4096)
    data[5000:5000] = b"inserted bytes shift everything after them"
    return bytes(data)


@pytest.mark.parametrize("compression", tokens.COMPRESSIONS)
def test_delta_rebuilds_the_new_file(compression: str) -> None:
    neg = _negotiated(compression)
    basis = random.Random(1).randbytes(3_000_000)
    new = _changed(basis, 2)
    wire_bytes, literal = _send(neg, basis, new, _BytesReader(new))
    rebuilt, sent_sum, our_sum = _rebuild(neg, basis, wire_bytes)
    assert rebuilt == new
    assert sent_sum == our_sum
    assert literal < 30 * 4096 + 3 * 8192  # the changed regions, not the whole file


def test_recorded_digest_is_sent_without_hashing() -> None:
    neg = _negotiated("none")
    new = b"content " * 1000
    wire_order = checksums.new_plain_hasher("xxh128").digest()  # of b"": not new's digest
    library_order = wire_order[::-1]  # what the store records (xxhash's canonical digest)
    wire_bytes, _ = _send(neg, b"", new, _BytesReader(new, {"xxh128": library_order}))
    assert wire_bytes.endswith(wire_order)
