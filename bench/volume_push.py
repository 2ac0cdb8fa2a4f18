"""Push one large file through the store `FileSystem`: throughput, PUTs and peak RSS.

Writes `--gib` GiB of unique data (a random 1 MiB buffer with a per-MiB counter mixed
in, so nothing deduplicates and generating it costs little) through
`StoreProvider`/`StoreFileSystem` into a fresh local-directory store (or `--url`, e.g.
an S3 prefix), in 256 KiB writes as the receiver role makes them, commits, and prints
MB/s, the requests made and the process's peak resident memory. The requirement
(issue 3): a 10 GiB push keeps the server under ~200 MB RSS. `--pack-mib` compares
pack sizes.

    .venv/bin/python -m bench.volume_push [--gib 10] [--pack-mib 16] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np

from blockstore.factory import create_store
from blockstore.volume import VolumeParams
from rsyncd_py.fs.base import Stat
from rsyncd_py.fs.factory import StoreOptions
from rsyncd_py.fs.store import StoreProvider

WRITE = 256 << 10


async def push(url: str, state: Path, size: int) -> tuple[float, dict[str, int]]:
    provider = StoreProvider.open(StoreOptions(url=url, cache_dir=str(state)))
    try:
        fs = await provider.open_session(writable=True)
        base = np.frombuffer(np.random.default_rng(1).bytes(1 << 20), dtype=np.uint64)
        start = time.perf_counter()
        writer = await fs.create(b"big")
        for mib in range(size >> 20):
            if mib and not mib % 1024:
                print(f"  {mib >> 10} GiB written, RSS {current_rss_mib()} MiB", flush=True)
            block = (base ^ np.uint64(mib * 0x9E3779B97F4A7C15 % 2**64)).tobytes()
            for offset in range(0, len(block), WRITE):
                await writer.write(block[offset : offset + WRITE])
        await writer.commit(Stat(mode=stat.S_IFREG | 0o644, size=size))
        await fs.close(True)
        elapsed = time.perf_counter() - start
        return elapsed, provider.volume.request_stats()
    finally:
        await provider.aclose()


def current_rss_mib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) >> 10
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=10.0)
    parser.add_argument("--pack-mib", type=int, default=16)
    parser.add_argument("--url", help="an existing empty location (default: a temp dir)")
    args = parser.parse_args()
    size = int(args.gib * (1 << 30)) >> 20 << 20
    work = Path(tempfile.mkdtemp(prefix="volume-push-"))
    try:
        url = args.url or str(work / "store")
        create_store(url, volume=VolumeParams(pack_size=args.pack_mib << 20).to_config())
        elapsed, requests = asyncio.run(push(url, work / "state", size))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size / 2**30:.1f} GiB in {elapsed:.1f} s = {size / elapsed / 1e6:.0f} MB/s, "
              f"packs of {args.pack_mib} MiB, {requests.get('puts')} PUTs, "
              f"peak RSS {peak:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
