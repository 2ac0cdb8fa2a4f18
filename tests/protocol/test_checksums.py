"""Checksums against real rsync: live --debug=deltasum3 sum1 values, and captured pulls.

The goldens in tests/data/protocol/checksums/ come from make_checksum_captures.sh: a pull
of source.bin onto basis.bin with --checksum-seed=305419896, -c and --no-whole-file, for
each checksum and protocol. The client's block sums of basis.bin are in c2s; the
server's -c file checksum and whole-file checksum of source.bin are in s2c.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from rsyncd_py.protocol.checksums import (
    CHECKSUM_NAMES,
    digest_len,
    new_file_hasher,
    new_plain_hasher,
    strong_block_sums,
    weak_block_sums,
    weak_sum,
)

GOLDENS = Path(__file__).parent.parent / "data" / "protocol" / "checksums"
SEED = 305419896
RSYNC = shutil.which("rsync")


def reference_sum1(block: bytes) -> int:
    """checksum.c:get_checksum1, byte by byte, with signed chars."""
    s1 = s2 = 0
    for byte in block:
        s1 += byte - 256 if byte > 127 else byte
        s2 += s1
    return ((s1 & 0xFFFF) | (s2 << 16)) & 0xFFFFFFFF


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=1100))
def test_weak_block_sums_match_the_reference(data: bytes, block_len: int) -> None:
    sums = weak_block_sums(data, block_len)
    blocks = [data[i : i + block_len] for i in range(0, len(data), block_len)]
    assert sums.dtype == np.uint32
    assert sums.tolist() == [reference_sum1(b) for b in blocks]
    assert [weak_sum(b) for b in blocks] == sums.tolist()


def test_weak_sums_of_large_blocks_cross_chunk_boundaries() -> None:
    data = random.Random(7).randbytes(3 * 131072 + 5)
    assert weak_block_sums(data, 131072).tolist() == [
        reference_sum1(data[i : i + 131072]) for i in range(0, len(data), 131072)
    ]
    assert weak_block_sums(b"", 700).size == 0


@pytest.mark.skipif(RSYNC is None, reason="real rsync not installed")
@pytest.mark.parametrize("block_len", [None, 1000, 64])
def test_weak_sums_match_real_rsync_debug_output(tmp_path: Path, block_len: int | None) -> None:
    rnd = random.Random(block_len or 0)
    (tmp_path / "src").write_bytes(rnd.randbytes(7301))
    basis = rnd.randbytes(7300)
    (tmp_path / "dst").write_bytes(basis)
    size_arg = [f"--block-size={block_len}"] if block_len else []
    out = subprocess.run(
        [RSYNC, "--no-whole-file", "-I", "--debug=deltasum3", *size_arg,
         str(tmp_path / "src"), str(tmp_path / "dst")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    generated = out.split("count=", 2)[1]  # the generator's listing comes first
    reported = [int(v, 16) for v in re.findall(r"sum1=([0-9a-f]{8})", generated)]
    assert reported == weak_block_sums(basis, block_len or 700).tolist()


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDENS.iterdir() if p.is_dir())


def block_sums_on_wire(
    name: str, protocol: int, basis: bytes, s2length: int, *, seed_fix: bool = True
) -> bytes:
    weak = weak_block_sums(basis, 700)
    strong = strong_block_sums(
        name, basis, 700, s2length, protocol=protocol, seed=SEED, seed_fix=seed_fix
    )
    return b"".join(
        int(w).to_bytes(4, "little") + strong[i * s2length : (i + 1) * s2length]
        for i, w in enumerate(weak)
    )


@pytest.mark.parametrize("case", golden_cases())
def test_sums_match_captured_rsync_traffic(case: str) -> None:
    name, protocol_text = case.split("-p")
    protocol = int(protocol_text)
    source = (GOLDENS / "source.bin").read_bytes()
    basis = (GOLDENS / "basis.bin").read_bytes()
    c2s = (GOLDENS / case / "c2s").read_bytes()
    s2c = (GOLDENS / case / "s2c").read_bytes()

    # the client generator's sum_head (count, blength, s2length, remainder) and sums
    count = -(-len(basis) // 700)
    head = b"".join(v.to_bytes(4, "little") for v in (count, 700, 2, len(basis) % 700))
    assert head + block_sums_on_wire(name, protocol, basis, 2) in c2s

    whole = new_file_hasher(name, protocol=protocol, seed=SEED)
    whole.update(source)
    assert len(whole.digest()) == digest_len(name)
    assert whole.digest() in s2c

    plain = new_plain_hasher(name)
    plain.update(source[:5000])
    plain.update(source[5000:])
    assert plain.digest() in s2c  # the -c checksum in the file list


def test_the_goldens_tell_the_variants_apart() -> None:
    """The golden checks would fail for the usual mistakes (so they test something)."""
    source = (GOLDENS / "source.bin").read_bytes()
    basis = (GOLDENS / "basis.bin").read_bytes()
    md5 = (GOLDENS / "md5-p31" / "c2s").read_bytes()
    assert block_sums_on_wire("md5", 31, basis, 2, seed_fix=False) not in md5
    seed_appended = new_plain_hasher("md4")
    seed_appended.update(source + SEED.to_bytes(4, "little"))
    assert seed_appended.digest() not in (GOLDENS / "md4-p29" / "s2c").read_bytes()
    canonical = xxhash.xxh3_128_digest(source)
    assert canonical not in (GOLDENS / "xxh128-p32" / "s2c").read_bytes()
    unsigned = np.frombuffer(basis[:700], dtype=np.uint8).astype(np.int64)
    unsigned_sum1 = int(unsigned.sum() & 0xFFFF) | int((unsigned.cumsum().sum() & 0xFFFF) << 16)
    assert unsigned_sum1 != int(weak_block_sums(basis, 700)[0])


def test_known_vectors_and_byte_order() -> None:
    md4 = new_plain_hasher("md4")
    md4.update(b"abc")
    assert md4.digest().hex() == "a448017aaf21d8525fc10ae87aa6729d"  # RFC 1320
    xxh = new_plain_hasher("xxh64")
    xxh.update(b"hi\n")
    assert xxh.digest() == xxhash.xxh64_digest(b"hi\n")[::-1]
    assert strong_block_sums("xxh128", b"hi\n", 700, 16, protocol=31, seed=0, seed_fix=True) == (
        xxhash.xxh3_128_digest(b"hi\n")[::-1]
    )
    # a negative seed is sign-extended for xxhash and taken mod 2^32 for the md family
    assert strong_block_sums("xxh64", b"x", 700, 8, protocol=31, seed=-2, seed_fix=True) == (
        xxhash.xxh64_intdigest(b"x", 2**64 - 2).to_bytes(8, "little")
    )
    old = new_file_hasher("md4", protocol=29, seed=0)
    old.update(b"abc")
    prepended = new_plain_hasher("md4")
    prepended.update(b"\0\0\0\0abc")
    assert old.digest() == prepended.digest()  # MD4_OLD prepends even a zero seed
    assert {name: digest_len(name) for name in CHECKSUM_NAMES} == {
        "xxh128": 16, "xxh3": 8, "xxh64": 8, "md5": 16, "md4": 16, "sha1": 20,
    }


def test_strong_block_sums_layout_and_bad_arguments() -> None:
    data = bytes(range(256)) * 10
    sums = strong_block_sums("md5", data, 700, 5, protocol=30, seed=9, seed_fix=True)
    assert len(sums) == 4 * 5
    assert sums[15:] == strong_block_sums(
        "md5", data[2100:], 700, 5, protocol=30, seed=9, seed_fix=True
    )
    with pytest.raises(ValueError):
        strong_block_sums("xxh64", data, 700, 16, protocol=31, seed=0, seed_fix=True)
    with pytest.raises(ValueError):
        strong_block_sums("crc32", data, 700, 2, protocol=31, seed=0, seed_fix=True)
    with pytest.raises(ValueError):
        weak_block_sums(data, 0)
    with pytest.raises(ValueError):
        digest_len("sha256")
