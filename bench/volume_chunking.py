"""Pick the store's default chunk size: re-stored bytes after a scattered 1% change vs
index size for 1 TiB.

For each mean chunk size: write a 256 MiB random file into a volume (memory backend,
no compression or encryption, so stored block bytes = plaintext), overwrite 1% of it
in 4 KiB pieces at random 4 KiB-aligned places (655 pieces), write it again, and count
the bytes that had to be stored anew (the rest deduplicates). Then extrapolate the
pack index for 1 TiB of unique data at that mean (objects x bytes per index entry,
measured by `PackIndex` at its 77-92% fill: 48-57 bytes). Requirement (issue 3): at
most 64 MB re-stored, under 1 GB of index.

    .venv/bin/python -m bench.volume_chunking [--size-mib 256] [--sizes 16,32,64,128,256,1024]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blockstore.backends.memory import MemoryBackend
from blockstore.volume import ChunkParams, Volume, VolumeParams

INDEX_BYTES_PER_ENTRY = (48.4, 57.0)  # 44-byte slots at 92% and 77% fill (index.py)
TIB = 1 << 40


def store(volume: Volume, data: memoryview) -> tuple[int, int, float]:
    """(new bytes, chunks, seconds) to write `data` as one file."""
    counters = volume.objects.counters
    before = counters.bytes_new
    start = time.perf_counter()
    builder = volume.new_file()
    for offset in range(0, len(data), 1 << 20):
        builder.write(data[offset : offset + (1 << 20)])
    written = builder.finish()
    elapsed = time.perf_counter() - start
    return counters.bytes_new - before, len(written.referenced) // 33, elapsed


def measure(size: int, mean: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, size, dtype=np.uint8)
    changed = original.copy()
    pieces = size // 100 // 4096
    for place in rng.choice(size // 4096, pieces, replace=False):
        changed[place * 4096 : (place + 1) * 4096] = rng.integers(0, 256, 4096, dtype=np.uint8)
    volume = Volume(MemoryBackend(), params=VolumeParams(chunk=ChunkParams.for_average(mean)))
    try:
        first, chunks, seconds = store(volume, memoryview(original.tobytes()))
        again, _, _ = store(volume, memoryview(changed.tobytes()))
    finally:
        volume.close()
    actual_mean = first / chunks
    objects_per_tib = TIB / actual_mean
    return {
        "mean_param": mean,
        "actual_mean": actual_mean,
        "restored_mb": again / 1e6,
        "index_gb_low": objects_per_tib * INDEX_BYTES_PER_ENTRY[0] / 1e9,
        "index_gb_high": objects_per_tib * INDEX_BYTES_PER_ENTRY[1] / 1e9,
        "mb_per_s": size / seconds / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--sizes", default="16,32,48,64,96,128,256,1024",
                        help="mean chunk sizes in KiB")
    args = parser.parse_args()
    size = args.size_mib << 20
    print(f"{args.size_mib} MiB file, 1% changed in 4 KiB pieces; index for 1 TiB unique data")
    print(f"{'mean (param)':>12} {'mean (actual)':>13} {'re-stored':>10} "
          f"{'index/TiB':>14} {'ingest':>10}")
    for kib in (int(k) for k in args.sizes.split(",")):
        r = measure(size, kib << 10)
        print(f"{kib:>9} KiB {r['actual_mean'] / 1024:>9.1f} KiB {r['restored_mb']:>7.1f} MB "
              f"{r['index_gb_low']:>5.2f}-{r['index_gb_high']:.2f} GB {r['mb_per_s']:>6.0f} MB/s")


if __name__ == "__main__":
    main()
