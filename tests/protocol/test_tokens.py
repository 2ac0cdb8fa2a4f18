"""Token codecs: real rsync's token streams decoded, and encoder -> decoder round trips.

The goldens in tests/data/protocol/tokens/ come from make_token_captures.sh: pushes of
two files onto changed basis files by real rsync 3.2.7, for every compressor (and zlib
at protocols 30 and 29 with blocks over 64 KiB, where rsync's history insertion repeats
the block's first 64 KiB). Each file's token stream sits in the client's data stream
right after the sum_head it echoes; decoding it (a byte at a time) against the basis
must rebuild the source exactly and be followed by the source's whole-file checksum.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.checksums import new_file_hasher
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.tokens import (
    CHUNK_SIZE,
    COMPRESSIONS,
    END,
    Literal,
    Match,
    TokenDecoder,
    compression_level,
    new_token_decoder,
    new_token_encoder,
)
from tests.protocol.captures import demultiplex

GOLDENS = Path(__file__).parent.parent / "data" / "protocol" / "tokens"
def sum_head_candidates(basis_len: int, blength: int) -> list[bytes]:
    count = -(-basis_len // blength)
    return [
        struct.pack("<4i", count, blength, s2length, basis_len % blength)
        for s2length in range(2, 17)
    ]


def rebuild(
    decoder: TokenDecoder, wire: bytes, basis: bytes, blength: int
) -> tuple[bytes, int]:
    """Feed `wire` a byte at a time until END; return the file and the bytes used."""
    buf = ReceiveBuffer()
    out = bytearray()
    for position in range(len(wire)):
        buf.extend(wire[position : position + 1])
        while (item := decoder.next_token(buf)) is not None:
            if item is END:
                assert len(buf) == 0  # nothing read past the END flag
                return bytes(out), position + 1
            if isinstance(item, Literal):
                out += item.data
            else:
                assert isinstance(item, Match)
                block = basis[item.index * blength : (item.index + 1) * blength]
                decoder.see_match(block)
                out += block
    raise AssertionError("token stream did not end")


def whole_file_sums(source: bytes, protocol: int, server_stream: bytes) -> list[bytes]:
    """The whole-file checksums the session may have used (xxh128, md5; md4 below 30)."""
    if protocol < 30:
        seed = struct.unpack_from("<i", server_stream, 4)[0]  # after the version int
        names = ["md4"]
    else:
        seed, names = 0, ["xxh128", "md5"]
    sums = []
    for name in names:
        hasher = new_file_hasher(name, protocol=protocol, seed=seed)
        hasher.update(source)
        sums.append(hasher.digest())
    return sums


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDENS.iterdir() if p.is_dir())


def decode_case(case: str, compression: str, protocol: int) -> list[bytes]:
    """Decode both files of a captured session with one decoder; return the rebuilt files.

    Each file's whole-file checksum must follow its END flag.
    """
    parts = case.split("-")
    blength_option = int(parts[2][1:]) if len(parts) > 2 else 0
    stream = (GOLDENS / case / "c2s").read_bytes()
    data = stream if int(parts[1][1:]) < 30 else demultiplex(stream)  # <30: client is raw
    server_stream = (GOLDENS / case / "s2c").read_bytes()
    decoder = new_token_decoder(compression, protocol=protocol)
    position = 0
    rebuilt_files = []
    for name in ("f1", "f2"):  # one decoder for the session: zstd carries state over
        source = (GOLDENS / f"{name}.source").read_bytes()
        basis = (GOLDENS / f"{name}.basis").read_bytes()
        blength = blength_option or max(700, int(len(basis) ** 0.5) // 8 * 8)
        found = [
            (at, head)
            for head in sum_head_candidates(len(basis), blength)
            if (at := data.find(head, position)) >= 0
        ]
        assert found, f"{name}: sum_head not found"
        at, head = min(found)
        tokens_start = at + len(head)
        decoder.start_file()
        rebuilt, used = rebuild(decoder, data[tokens_start:], basis, blength)
        rebuilt_files.append(rebuilt)
        position = tokens_start + used
        assert data[position : position + 16] in whole_file_sums(
            source, int(parts[1][1:]), server_stream
        )
    return rebuilt_files


SOURCES = [(GOLDENS / f"{name}.source").read_bytes() for name in ("f1", "f2")]


@pytest.mark.parametrize("case", golden_cases())
def test_decode_real_rsync_token_streams(case: str) -> None:
    compression, protocol_text = case.split("-")[:2]
    protocol = int(protocol_text[1:])
    assert decode_case(case, compression, protocol) == SOURCES


@pytest.mark.parametrize(
    ("case", "compression", "protocol"),
    [
        ("zlib-p32", "zlibx", 32),  # without history insertion
        ("zlib-p30-B100000", "zlibx", 30),
        ("zlib-p30-B100000", "zlib", 31),  # without the <31 insertion bug
        ("zlib-p29-B70000", "zlib", 31),
    ],
)
def test_history_and_the_old_protocol_bug_are_needed(
    case: str, compression: str, protocol: int
) -> None:
    """The goldens exercise what they claim: a decoder without it fails on them."""
    try:
        rebuilt = decode_case(case, compression, protocol)
    except (RemoteProtocolError, AssertionError):
        return
    assert rebuilt != SOURCES

def decode_items(compression: str, protocol: int, wire: bytes, basis: bytes, blength: int):
    decoder = new_token_decoder(compression, protocol=protocol)
    buf = ReceiveBuffer(wire)
    items = []
    while (item := decoder.next_token(buf)) is not END:
        assert item is not None
        if isinstance(item, Match):
            decoder.see_match(basis[item.index * blength : (item.index + 1) * blength])
        items.append(item)
    return items


def first_file_tokens(case: str) -> tuple[bytes, bytes, int]:
    data = demultiplex((GOLDENS / case / "c2s").read_bytes())
    basis = (GOLDENS / "f1.basis").read_bytes()
    head = sum_head_candidates(len(basis), 700)[0]
    return data[data.index(head) + len(head) :], basis, 700


def test_plain_encoder_reproduces_rsync_bytes() -> None:
    wire, basis, blength = first_file_tokens("none-p32")
    items = decode_items("none", 32, wire, basis, blength)
    encoder = new_token_encoder("none")
    encoder.start_file()
    ours = b"".join(
        encoder.literal(i.data) if isinstance(i, Literal)
        else encoder.match(i.index, basis[i.index * blength : (i.index + 1) * blength])
        for i in items
    ) + encoder.end()
    assert wire.startswith(ours)
    assert any(isinstance(i, Literal) and len(i.data) == CHUNK_SIZE for i in items)


# a delta: (kind, value) with kind "L" literal bytes or "M" block index
deltas = st.lists(
    st.one_of(
        st.tuples(st.just("L"), st.binary(min_size=1, max_size=5000)),
        # long runs of one byte: compress far, cross CHUNK_SIZE and frame sizes
        st.tuples(st.just("L"), st.integers(1, 90_000).map(lambda n: bytes([n % 251]) * n)),
        st.tuples(st.just("M"), st.integers(0, 150)),
    ),
    max_size=25,
)
BASIS = random.Random(5).randbytes(151 * 1000)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(COMPRESSIONS),
    st.lists(deltas, min_size=1, max_size=3),
    st.sampled_from([30, 31]),
)
def test_round_trip_every_codec(compression: str, files: list, protocol: int) -> None:
    encoder = new_token_encoder(compression, protocol=protocol)
    decoder = new_token_decoder(compression, protocol=protocol)
    for ops in files:  # several files through one encoder/decoder pair (zstd state persists)
        encoder.start_file()
        wire = bytearray()
        expected = bytearray()
        for kind, value in ops:
            if kind == "L":
                wire += encoder.literal(value)
                expected += value
            else:
                block = BASIS[value * 1000 : (value + 1) * 1000]
                wire += encoder.match(value, block)
                expected += block
        wire += encoder.end()
        decoder.start_file()
        rebuilt, used = rebuild(decoder, bytes(wire), BASIS, 1000)
        assert (rebuilt, used) == (bytes(expected), len(wire))


def test_runs_are_coalesced_and_relative() -> None:
    encoder = new_token_encoder("zstd")
    encoder.start_file()
    wire = b"".join(encoder.match(i, b"x") for i in (0, 1, 2, 3, 5, 200, 201)) + encoder.end()
    # TOKENRUN_REL +0 run 3, TOKEN_REL +2 (after 3), TOKENRUN_LONG 200 run 1, END
    assert wire == bytes([0xC0, 3, 0, 0x82, 0x21]) + struct.pack("<i", 200) + bytes([1, 0, 0])
    decoded = decode_items("zstd", 32, wire, b"", 1)
    assert decoded == [Match(i) for i in (0, 1, 2, 3, 5, 200, 201)]


def test_plain_literals_are_chunked_and_streamed() -> None:
    encoder = new_token_encoder("none")
    wire = encoder.literal(bytes(70_000)) + encoder.end()
    assert struct.unpack_from("<i", wire)[0] == CHUNK_SIZE
    # a peer's oversized record is delivered in <= 32 KiB pieces as it arrives
    decoder = new_token_decoder("none")
    buf = ReceiveBuffer(struct.pack("<i", 100_000) + bytes(40_000))
    assert decoder.next_token(buf) == Literal(bytes(CHUNK_SIZE))
    assert decoder.next_token(buf) is None
    buf.extend(bytes(60_000) + struct.pack("<i", -3) + struct.pack("<i", 0))
    pieces = [decoder.next_token(buf) for _ in range(3)]
    assert [len(p.data) for p in pieces if isinstance(p, Literal)] == [
        CHUNK_SIZE, CHUNK_SIZE, 100_000 - 3 * CHUNK_SIZE
    ]
    assert decoder.next_token(buf) == Match(2)
    assert decoder.next_token(buf) is END


@pytest.mark.parametrize(
    ("compression", "wire"),
    [
        ("zlib", bytes([0x40, 3]) + b"\xff\xff\xff" + b"\x00"),  # not deflate
        ("zstd", bytes([0x40, 4]) + b"junk" + b"\x00"),
        ("lz4", bytes([0x40, 2]) + b"\xf0\xff" + b"\x00"),
        ("zlibx", bytes([0x05])),  # no such flag
        ("zstd", bytes([0x20]) + struct.pack("<i", -5)),  # negative absolute token
        ("lz4", bytes([0xC0, 0, 0])),  # a run of zero blocks
    ],
)
def test_malformed_streams_are_remote_errors(compression: str, wire: bytes) -> None:
    decoder = new_token_decoder(compression)
    buf = ReceiveBuffer(wire)
    with pytest.raises(RemoteProtocolError):
        while decoder.next_token(buf) not in (None, END):
            pass


def test_incomplete_records_consume_nothing() -> None:
    encoder = new_token_encoder("zlib")
    wire = encoder.literal(b"hello " * 100) + encoder.match(70, b"y" * 64) + encoder.end()
    decoder = new_token_decoder("zlib")
    buf = ReceiveBuffer()
    for byte in wire[:-1]:
        before = len(buf)
        buf.extend(bytes([byte]))
        item = decoder.next_token(buf)
        assert item is None or len(buf) < before + 1
        if isinstance(item, Match):
            decoder.see_match(b"y" * 64)


def test_compression_levels_follow_rsync() -> None:
    assert compression_level("zlib", 0) == ("none", None)
    assert compression_level("zlib", None) == ("zlib", 6)
    assert compression_level("zlibx", 42) == ("zlibx", 9)
    assert compression_level("zstd", 0) == ("zstd", 3)
    assert compression_level("zstd", 99) == ("zstd", 22)
    assert compression_level("lz4", 5) == ("lz4", 0)
    with pytest.raises(ValueError):
        new_token_encoder("zlib", 0)
    with pytest.raises(ValueError):
        new_token_decoder("brotli")


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_long_runs_stay_within_the_frame_output_limit(compression: str) -> None:
    encoder = new_token_encoder(compression)
    wire = encoder.literal(bytes(48 << 20)) + encoder.end()
    decoder = new_token_decoder(compression)
    buf = ReceiveBuffer(wire)
    total = 0
    while (item := decoder.next_token(buf)) is not END:
        assert isinstance(item, Literal)
        total += len(item.data)
    assert total == 48 << 20


def test_zstd_decompression_bombs_are_refused() -> None:
    """One zstd frame can expand to hundreds of MiB; deflate's ~1032:1 limit keeps a
    16383-byte zlib frame under 17 MiB, so only zstd needs the check."""
    stream = zstandard.ZstdCompressor().compressobj()
    bomb = stream.compress(bytes(64 << 20)) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    assert len(bomb) <= 16383
    wire = bytes([0x40 | len(bomb) >> 8, len(bomb) & 0xFF]) + bomb + b"\0"
    with pytest.raises(RemoteProtocolError):
        new_token_decoder("zstd").next_token(ReceiveBuffer(wire))
