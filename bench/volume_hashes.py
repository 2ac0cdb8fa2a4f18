"""Block-id and whole-file digest candidates, MB/s over 64 KiB chunks (one core).

Backs the choices in blockstore/volume/blockid.py (SHA-256, or HMAC-SHA256 keyed) and
files.py (XXH128 always, MD5 only on request).

    .venv/bin/python -m bench.volume_hashes [--mib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time
from collections.abc import Callable

import xxhash

KEY = os.urandom(32)
CANDIDATES: dict[str, Callable[[memoryview], object]] = {
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "hmac-sha256 (keyed)": lambda b: hmac.digest(KEY, b, "sha256"),
    "blake2b-256 (keyed)": lambda b: hashlib.blake2b(b, digest_size=32, key=KEY).digest(),
    "blake2s-256 (keyed)": lambda b: hashlib.blake2s(b, key=KEY).digest(),
    "md5": lambda b: hashlib.md5(b).digest(),
    "xxh3-128": xxhash.xxh3_128_digest,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    data = memoryview(os.urandom(args.mib << 20))
    for name, digest in CANDIDATES.items():
        best = 0.0
        for _round in range(3):
            start = time.perf_counter()
            for offset in range(0, len(data), 64 << 10):
                digest(data[offset : offset + (64 << 10)])
            best = max(best, len(data) / (time.perf_counter() - start) / 1e6)
        print(f"{name:22} {best:8.0f} MB/s")


if __name__ == "__main__":
    main()
