"""Pull benchmark: restores from rsyncd-py side by side with stock rsync, plus block search.

Two parts, in one run:

1. **End to end** (the `python -m bench` machinery: same data sets, same systems, same
   checks). Each system is filled by a push of the big file and a delta push of its 1%
   changed version; then timed: a full pull of the file into an empty directory and a
   delta pull over the original (the client holds the old version, the server the new
   one). Stock rsync runs behind a throwaway sshd; rsyncd-py serves a local store.
2. **Block search** (`protocol/match.py`, the sender's hot loop): MB/s of the Matcher
   over the changed file against the block sums of the original (mostly aligned runs),
   and over unrelated data (no block matches: every offset is rolled and looked up).

    .venv/bin/python -m bench.pull [--size full|small] [--reps 1] [--systems stock,rsyncd-local]

`--size full` is the 1 GiB file; `--size small` (16 MiB, seconds) is what the test
suite runs so this script cannot rot. Exit status 0 when every transfer was verified.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import datasets, report
from bench.__main__ import _scratch_root
from bench.runner import Runner, scenarios
from bench.systems import ClientKey, make_systems
from rsyncd_py.protocol.checksums import strong_block_sums, weak_block_sums
from rsyncd_py.protocol.match import BlockSums, Matcher
from rsyncd_py.protocol.sums import sum_sizes_sqroot

FILL = ("push_new", "push_delta")  # put the new version of the big file on each server
PULLS = ("pull_full", "pull_delta")
SEED = 0x5EED
FEED = 1 << 20


def search_throughput(basis: bytes, data: bytes) -> tuple[float, int]:
    """MB/s of the block search of `data` against `basis`'s sums; bytes matched."""
    head = sum_sizes_sqroot(len(basis), protocol=32, xfer_sum_len=16)
    weak = weak_block_sums(basis, head.blength)
    strong = strong_block_sums(
        "xxh128", basis, head.blength, head.s2length, protocol=32, seed=SEED, seed_fix=True
    )
    sums = BlockSums(head.count, head.blength, head.s2length, head.remainder, weak, strong)
    matcher = Matcher(sums, "xxh128", 32, SEED, True)
    matched = 0
    started = time.perf_counter()
    view = memoryview(data)
    items = []
    for offset in range(0, len(data), FEED):
        items += matcher.feed(view[offset : offset + FEED])
    items += matcher.finish()
    elapsed = time.perf_counter() - started
    for item in items:
        if not hasattr(item, "data"):
            matched += sums.block_len(item.index)  # type: ignore[attr-defined]
    return len(data) / elapsed / 1e6, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pull", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(datasets.SPECS), default="full")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--systems", default="stock,rsyncd-local")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)

    spec = datasets.SPECS[args.size]
    base = _scratch_root() / "rsyncd-py-bench"
    sets = datasets.ensure(args.data_dir or base / f"data-{spec.name}", spec)
    chosen = [s for s in scenarios(sets) if s.name in FILL + PULLS]
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pull-", dir=base))
    try:
        systems = make_systems(work, ClientKey.create(work), args.systems.split(","))
        runner = Runner(sets, systems, work, progress=lambda line: print(line, flush=True))
        results = runner.run(chosen, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pulls = [s for s in chosen if s.name in PULLS]
    rows = report.summarise([r for r in results if r.scenario in PULLS], pulls, systems)
    print(f"\n{spec.name} data sets, {args.reps} repetition(s); medians; "
          "ratio = wall / stock rsync wall")  # fmt: skip
    for scenario in pulls:
        print(f"  {scenario.name:<11} {scenario.title}")
    print()
    print(report.table(rows))

    original = (sets.big / "big.bin").read_bytes()
    changed = (sets.delta / "big.bin").read_bytes()
    unrelated = np.random.default_rng(7).bytes(len(changed))
    print("\nblock search (protocol/match.py, xxh128 strong sums, one core):")
    for label, data in (("1% changed", changed), ("no matches", unrelated)):
        rate, matched = search_throughput(original, data)
        print(f"  {label:<11} {rate:8.0f} MB/s   matched {matched / len(data):6.1%}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
