"""File-list codec throughput: entries per second encoded, decoded and sorted.

A push of 10,000 small files spends its protocol time here (the client sends the list,
the server decodes and sorts it; a pull reverses the roles), so the figure to compare
is entries/s against rsync's ~12,500 files/s over ssh end to end. The list is 100
directories of 100 files with `-a` options at protocol 31 (varint flags, uid/gid,
links, devices, specials) and at protocol 29 (byte flags), plus a `-c` variant that
carries a 16-byte file checksum per file. MB/s is of wire bytes; entries/s is in the
benchmark's extra_info and in the label.
"""

from __future__ import annotations

import stat

import pytest

from bench.micro.throughput import measure
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.flist import FileEntry, FlistDecoder, FlistEncoder, FlistOptions, ListEnd
from rsyncd_py.protocol.flist_sort import sort_and_clean
from rsyncd_py.protocol.ints import read_item

DIRS, FILES = 100, 100
MTIME = 1_700_000_000

OPTIONS = {
    "p31": FlistOptions(protocol=31, varint_flags=True, safe_flist=True, preserve_uid=True,
                        preserve_gid=True, preserve_links=True, preserve_devices=True,
                        preserve_specials=True),
    "p29": FlistOptions(protocol=29, preserve_uid=True, preserve_gid=True, preserve_links=True,
                        preserve_devices=True, preserve_specials=True),
    "p31-c": FlistOptions(protocol=31, varint_flags=True, safe_flist=True, preserve_uid=True,
                          preserve_gid=True, checksum_len=16),
}  # fmt: skip


def entries(checksum: bool) -> list[FileEntry]:
    """The list rsync would send for 100 dirs x 100 files (dirs before their files)."""
    out = [FileEntry(b".", stat.S_IFDIR | 0o755, size=4096, mtime=MTIME, uid=0, gid=0)]
    for d in range(DIRS):
        out.append(FileEntry(f"d{d:02d}".encode(), stat.S_IFDIR | 0o755, size=4096,
                             mtime=MTIME, uid=0, gid=0))  # fmt: skip
        for f in range(FILES):
            out.append(FileEntry(
                f"d{d:02d}/f{d * FILES + f:05d}".encode(), stat.S_IFREG | 0o644, size=4096,
                mtime=MTIME + f, mtime_nsec=0, uid=1000, gid=1000,
                checksum=(d * FILES + f).to_bytes(16, "little") if checksum else None,
            ))  # fmt: skip
    return out


def encode_all(options: FlistOptions, items: list[FileEntry]) -> bytes:
    encoder = FlistEncoder(options)
    return b"".join([encoder.encode(item) for item in items]) + encoder.end()


def decode_all(options: FlistOptions, wire: bytes) -> int:
    buf = ReceiveBuffer()
    buf.extend(wire)
    decoder = FlistDecoder(options)
    while not isinstance(read_item(buf, decoder.read), ListEnd):
        pass
    return len(decoder.entries)


def _report(benchmark, count: int) -> None:
    rate = count / benchmark.stats.stats.median
    benchmark.extra_info["entries/s"] = round(rate)


@pytest.mark.parametrize("variant", sorted(OPTIONS))
def test_encode(benchmark, variant):
    options, items = OPTIONS[variant], entries(OPTIONS[variant].checksum_len > 0)
    wire = encode_all(options, items)
    measure(benchmark, f"flist encode {variant} ({len(items):,} entries)", len(wire),
            encode_all, options, items)  # fmt: skip
    _report(benchmark, len(items))


@pytest.mark.parametrize("variant", sorted(OPTIONS))
def test_decode(benchmark, variant):
    options, items = OPTIONS[variant], entries(OPTIONS[variant].checksum_len > 0)
    wire = encode_all(options, items)
    count = measure(benchmark, f"flist decode {variant} ({len(items):,} entries)", len(wire),
                    decode_all, options, wire)  # fmt: skip
    assert count == len(items)
    _report(benchmark, len(items))


def test_sort_and_clean(benchmark):
    items = entries(False)
    shuffled = items[::2] + items[1::2]  # received order differs from sorted order
    wire = len(encode_all(OPTIONS["p31"], items))  # MB/s of the list as it came in
    measure(benchmark, f"flist sort_and_clean ({len(items):,} entries)", wire,
            sort_and_clean, shuffled, 31)  # fmt: skip
    _report(benchmark, len(items))
