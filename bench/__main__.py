"""`python -m bench` (`make bench`): rsyncd-py side by side with stock rsync over SSH.

Generates the deterministic data sets (cached under the data directory, on tmpfs by
default), starts the three systems (stock rsync behind a throwaway OpenSSH sshd,
`rsyncd-py serve` on a local store, `rsyncd-py serve` on a moto S3 server), runs every
scenario on each in turn for `--reps` repetitions, prints a table and writes the JSON
record to `bench/results/`. Every client uses `ssh -c aes128-gcm@openssh.com`.

    python -m bench [--size full|small] [--reps 3] [--systems stock,rsyncd-local,rsyncd-s3]
                    [--scenarios push_new,...] [--data-dir DIR] [--json FILE]

Exit status 0 when every transfer was verified, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import datasets, profiles, report
from bench.runner import Runner, scenarios
from bench.systems import SYSTEM_NAMES, ClientKey, make_systems

RESULTS_DIR = Path(__file__).parent / "results"


def _scratch_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(datasets.SPECS), default="full",
                        help="full: 1 GiB / 10,000 files / 500 MB; small: MiB-sized, seconds")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--systems", default=",".join(SYSTEM_NAMES),
                        help="comma-separated, from: " + ", ".join(SYSTEM_NAMES))
    parser.add_argument("--scenarios", help="comma-separated scenario names (default all)")
    parser.add_argument("--data-dir", type=Path,
                        help="where the data sets are cached (default /dev/shm/rsyncd-py-bench)")
    parser.add_argument("--json", type=Path, help="JSON record path (default bench/results/)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record a py-spy profile of the rsyncd-py server for every run "
                             "into DIR and print its busiest frames (timings then run slow)")
    args = parser.parse_args(argv)  # fmt: skip

    spec = datasets.SPECS[args.size]
    base = _scratch_root() / "rsyncd-py-bench"
    data_root = args.data_dir or base / f"data-{spec.name}"
    print(f"data sets ({spec.name}) in {data_root} ...", flush=True)
    sets = datasets.ensure(data_root, spec)
    every = scenarios(sets)
    chosen = every
    if args.scenarios:
        names = args.scenarios.split(",")
        unknown = sorted(set(names) - {s.name for s in every})
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(unknown)}")
        chosen = [s for s in every if s.name in names]
    system_names = args.systems.split(",")
    if unknown := sorted(set(system_names) - set(SYSTEM_NAMES)):
        parser.error(f"unknown system(s) {', '.join(unknown)}")
    profiler = None
    if args.profile:
        spy = profiles.find_py_spy()
        if spy is None:
            parser.error("--profile needs py-spy (.venv/bin/pip install py-spy)")
        profiler = profiles.Profiler(args.profile, spy)

    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=base))
    try:
        key = ClientKey.create(work)
        systems = make_systems(work, key, system_names)
        for system in systems:
            print(f"system {system.name}: {system.label}")
        runner = Runner(sets, systems, work, progress=lambda line: print(line, flush=True),
                        profiler=profiler)  # fmt: skip
        results = runner.run(chosen, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = report.summarise(results, chosen, systems)
    print()
    print(f"{spec.name} data sets, {args.reps} repetition(s), client rsync -a over "
          f"ssh -c aes128-gcm@openssh.com; medians; ratio = wall / stock rsync wall")
    for scenario in chosen:
        print(f"  {scenario.name:<11} {scenario.title}")
    print()
    print(report.table(rows))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS_DIR / f"bench-{spec.name}-{stamp}.json"
    options = {"size": spec.name, "reps": args.reps, "systems": system_names,
               "scenarios": [s.name for s in chosen], "data": asdict(spec)}  # fmt: skip
    report.record(path, options=options, rows=rows, results=results, systems=systems)
    print(f"\nJSON: {path}")
    if profiler is not None:
        summaries = "\n\n".join(profiles.summarise(f) for f in profiler.files)
        (profiler.directory / "summary.txt").write_text(summaries + "\n")
        print(f"\n{summaries}\n\nprofiles: {profiler.directory}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
