"""Real rsync decodes what our Matcher and token encoders produce.

A real client pulls two files onto changed basis files from a real `rsync --server
--sender` through the capture relay. In the recorded server stream each file's token
stream (found after the echoed sum_head) is replaced by ours: the Matcher's items
against the basis's block sums, through our encoder for the session's compressor (one
encoder for both files, as zstd needs). A fresh real client, with the same basis files,
is then run against that stream (tests/protocol/replay_rsh.py): it must accept every
token, verify each whole-file checksum and end with the new files, exit code 0.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from rsyncd_py.protocol.checksums import strong_block_sums, weak_block_sums
from rsyncd_py.protocol.match import BlockSums, Matcher
from rsyncd_py.protocol.tokens import (
    COMPRESSIONS,
    END,
    Literal,
    new_token_decoder,
    new_token_encoder,
)
from tests.protocol.captures import RSYNC, parse_mux, run_captured, run_replayed

pytestmark = pytest.mark.skipif(RSYNC is None, reason="real rsync not installed")

INPUTS = Path(__file__).parent.parent / "data" / "protocol" / "tokens"
SEED = 1234567
FILES = ("f1", "f2")


def block_length(basis: bytes, block_size: int) -> int:
    return block_size or max(700, int(len(basis) ** 0.5) // 8 * 8)


def find_tokens(
    data: bytes, basis: bytes, start: int, blength: int
) -> tuple[int, int, int]:
    """(offset of the token stream, its length, s2length) of the next file after `start`."""
    count = -(-len(basis) // blength)
    found = []
    for s2length in range(2, 17):
        head = struct.pack("<4i", count, blength, s2length, len(basis) % blength)
        at = data.find(head, start)
        if at >= 0:
            found.append((at + len(head), s2length))
    at, s2length = min(found)
    decoder = new_token_decoder("none")  # only to measure: the capture is uncompressed
    return at, _token_stream_length(decoder, data, at), s2length


def _token_stream_length(decoder, data: bytes, at: int) -> int:
    from rsyncd_py.protocol.buffer import ReceiveBuffer

    buf = ReceiveBuffer(data[at:])
    while (item := decoder.next_token(buf)) is not END:
        assert item is not None
        if not isinstance(item, Literal):
            decoder.see_match(b"")
    return len(data) - at - len(buf)


def our_tokens(encoder, basis: bytes, source: bytes, s2length: int, blength: int) -> bytes:
    weak = weak_block_sums(basis, blength)
    strong = strong_block_sums(
        "xxh128", basis, blength, s2length, protocol=32, seed=SEED, seed_fix=True
    )
    sums = BlockSums(len(weak), blength, s2length, len(basis) % blength, weak, strong)
    matcher = Matcher(sums, "xxh128", 31, SEED, True)
    items = []
    for offset in range(0, len(source), 100_000):
        items += matcher.feed(source[offset : offset + 100_000])
    items += matcher.finish()
    encoder.start_file()
    wire = bytearray()
    for item in items:
        if isinstance(item, Literal):
            wire += encoder.literal(item.data)
        else:
            start = item.index * blength
            wire += encoder.match(item.index, basis[start : start + sums.block_len(item.index)])
    return bytes(wire + encoder.end())


def setup_dirs(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for name in FILES:
        shutil.copy(INPUTS / f"{name}.source", src / name)
        shutil.copy(INPUTS / f"{name}.basis", dst / name)
    return src, dst


CASES = [(c, 32, 0) for c in COMPRESSIONS] + [("zlib", 30, 100_000), ("zlibx", 31, 90_000)]


def replay_with_our_tokens(
    tmp_path: Path, compression: str, protocol: int, block_size: int, *, corrupt: bool = False
) -> tuple[int, str, Path, Path]:
    """Record a pull, splice in our tokens, replay it; return (exit code, stderr, src, dst).

    With `corrupt`, our tokens describe the source with one byte changed.
    """
    src, dst = setup_dirs(tmp_path)
    # no incremental recursion: its file lists follow the client's pace, not a script
    common = ["-r", "--no-inc-recursive", "-I", "--no-whole-file", f"--checksum-seed={SEED}",
              "--cc=xxh128", f"--protocol={protocol}"]
    if block_size:
        common.append(f"--block-size={block_size}")
    # record an uncompressed session: its token streams are easy to delimit
    _, client_stream = run_captured([*common, f"lh:{src}/", f"{dst}/"], tmp_path / "caps")
    recorded = parse_mux((tmp_path / "caps" / "0.s2c").read_bytes())

    encoder = new_token_encoder(compression, protocol=protocol)
    spans = []
    position = 0
    for name in FILES:
        basis = (INPUTS / f"{name}.basis").read_bytes()
        blength = block_length(basis, block_size)
        at, length, s2length = find_tokens(recorded.data, basis, position, blength)
        source = bytearray((INPUTS / f"{name}.source").read_bytes())
        if corrupt:
            source[len(source) // 2] ^= 1
        spans.append((at, at + length, our_tokens(encoder, basis, bytes(source), s2length,
                                                  blength)))
        position = at + length
    stream = recorded
    for start, end, tokens in reversed(spans):
        stream = stream.splice(start, end, tokens)

    for name in FILES:  # the same basis files again for the replayed session
        shutil.copy(INPUTS / f"{name}.basis", dst / name)
    flags = [] if compression == "none" else ["-z", f"--zc={compression}"]
    result = run_replayed(
        [*common, *flags, f"lh:{src}/", f"{dst}/"], stream.to_bytes(), client_stream, tmp_path
    )
    return result.returncode, result.stderr.decode(errors="replace"), src, dst


@pytest.mark.parametrize(("compression", "protocol", "block_size"), CASES)
def test_real_rsync_accepts_our_delta(
    tmp_path: Path, compression: str, protocol: int, block_size: int
) -> None:
    """Blocks over 64 KiB at protocol 30 exercise rsync's zlib history-insertion bug."""
    code, stderr, src, dst = replay_with_our_tokens(tmp_path, compression, protocol, block_size)
    assert code == 0, stderr
    for name in FILES:
        assert (dst / name).read_bytes() == (src / name).read_bytes()


def test_real_rsync_rejects_a_wrong_delta(tmp_path: Path) -> None:
    """The replay can fail: tokens for other data do not match the recorded checksums.

    rsync discards such a file (and asks for it again, which the replay cannot serve).
    """
    _, _, _, dst = replay_with_our_tokens(tmp_path, "zstd", 32, 0, corrupt=True)
    for name in FILES:
        assert (dst / name).read_bytes() == (INPUTS / f"{name}.basis").read_bytes()
