"""Incremental recursion at scale: a push and a pull of a tree of 200,000 small entries.

The `python -m bench` machinery (bench/systems.py, bench/runner.py) with a data set of
its own: stock rsync behind a throwaway OpenSSH sshd (`rsync --server` writing to a
local directory) beside `rsyncd-py serve` on a local store. Each system gets the tree
pushed into it (new) and then pulled back into an empty directory, with the client's
default options -- so incremental recursion, which both servers agree to. Printed per
run: wall time and the server's CPU and peak RSS (GNU time's for stock rsync,
VmHWM of the serve process for rsyncd-py, reset before each run); the target is a
server peak below 300 MB however large the tree, since the file lists are freed
directory by directory as the transfer goes.

    .venv/bin/python -m bench.inc_recurse [--size full|small] [--reps 1]
                                          [--systems stock,rsyncd-local] [--data-dir DIR]

`--size full` is 200,000 entries (2,000 directories of 99 files); `--size small`
(6,000 entries, seconds) is what the test suite runs so this script cannot rot. The
tree is generated once (deterministic content and times) and cached on disk, not on
tmpfs: 200,000 small files would pin 800 MB of RAM there. Exit status 0 when every
transfer was verified (the runner's checks: a --checksum dry run after the push, every
file compared after the pull).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import report
from bench.datasets import BASE_MTIME, DataSets, DataSpec
from bench.runner import Runner, Scenario
from bench.systems import ClientKey, make_systems

FILES_PER_DIR = 99
DIRS_PER_TOP = 20
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "rsyncd-py-bench-inc"
TARGET_RSS = 300 * 1000 * 1000


@dataclass(frozen=True, slots=True)
class TreeSpec:
    """How many entries the tree has (files plus directories, roughly)."""

    name: str
    entries: int

    @property
    def leaf_dirs(self) -> int:
        return max(1, self.entries // (FILES_PER_DIR + 1))


SIZES = {"full": TreeSpec("full", 200_000), "small": TreeSpec("small", 6_000)}


def ensure_tree(root: Path, spec: TreeSpec) -> Path:
    """Make (once) `root`/tree: top dirs of DIRS_PER_TOP dirs of FILES_PER_DIR files.

    File i holds its number repeated to 0-255 bytes; every entry has a fixed mtime.
    """
    tree = root / "tree"
    marker = root / ".complete"
    wanted = json.dumps({"entries": spec.entries, "format": 1})
    if marker.exists() and marker.read_text() == wanted:
        return tree
    shutil.rmtree(root, ignore_errors=True)
    tree.mkdir(parents=True)
    when = (BASE_MTIME, BASE_MTIME)
    number = 0
    for leaf in range(spec.leaf_dirs):
        directory = tree / f"t{leaf // DIRS_PER_TOP:04}" / f"d{leaf % DIRS_PER_TOP:02}"
        directory.mkdir(parents=True)
        for i in range(FILES_PER_DIR):
            path = directory / f"f{i:02}"
            path.write_bytes((b"%d," % number) * (number % 37))
            os.utime(path, when)
            number += 1
        os.utime(directory, when)
    for directory in [*tree.iterdir(), tree]:
        os.utime(directory, when)
    marker.write_text(wanted)
    return tree


def scenarios(spec: TreeSpec) -> list[Scenario]:
    count = f"{spec.leaf_dirs * (FILES_PER_DIR + 1):,} entries"
    return [
        Scenario("inc_push", "push", "tree", "tree", "tree", title=f"push, new tree of {count}"),
        Scenario("inc_pull", "pull", "", "tree", "tree", title="pull of it, into nothing"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inc_recurse", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--systems", default="stock,rsyncd-local")
    parser.add_argument("--data-dir", type=Path, help=f"default {DEFAULT_ROOT}-<size>")
    args = parser.parse_args(argv)

    spec = SIZES[args.size]
    data_root = args.data_dir or Path(f"{DEFAULT_ROOT}-{spec.name}")
    print(f"tree ({spec.entries:,} entries) in {data_root} ...", flush=True)
    ensure_tree(data_root, spec)
    sets = DataSets(data_root, DataSpec(spec.name, 0, 0, 0, 0, 0))
    chosen = scenarios(spec)
    work = Path(tempfile.mkdtemp(prefix="inc-", dir=data_root.parent))
    try:
        systems = make_systems(work, ClientKey.create(work), args.systems.split(","))
        for system in systems:
            print(f"system {system.name}: {system.label}")
        runner = Runner(sets, systems, work, progress=lambda line: print(line, flush=True))
        results = runner.run(chosen, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = report.summarise(results, chosen, systems)
    print(f"\n{spec.name}: {args.reps} repetition(s), client rsync -a (incremental "
          "recursion) over ssh; medians; ratio = wall / stock rsync wall")  # fmt: skip
    for scenario in chosen:
        print(f"  {scenario.name:<11} {scenario.title}")
    print()
    print(report.table(rows))
    ok = all(r.ok for r in results)
    for row in rows:
        peak = row["peak_rss"]
        if row["system"] != "stock" and isinstance(peak, (int, float)):
            verdict = "below" if peak < TARGET_RSS else "ABOVE"
            print(f"{row['scenario']} {row['system']}: server peak RSS {peak / 1e6:.0f} MB, "
                  f"{verdict} the {TARGET_RSS // 1_000_000} MB target")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
