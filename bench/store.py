"""Store throughput: write and read MB/s and CPU per GiB through the whole layer stack.

    .venv/bin/python -m bench.store [--size full|small] [--configs local-plain,...]
                                    [--data-dir DIR] [--json FILE]

Writes the benchmark data sets (bench/datasets.py: 1 GiB of random bytes in one file,
500 MB of text-like data in 1,000 files; `--size small`: 16 MiB and 8 MB) into a fresh
store as a push does -- `StoreProvider` sessions over `open_volume`, `StoreFileSystem`
files written 256 KiB at a time and committed -- and reads them back as a pull does
(`StoreFileReader.stream`), checking every file's XXH3-128. Configurations: a local
directory store on tmpfs, unencrypted and encrypted, and an encrypted store on a moto
S3 server this benchmark starts. Each phase runs on a volume opened afresh in this
process (pack index, trees and caches as a new server process finds them; tmpfs is
always in the page cache), on uvloop as the server does. Reads are "cold"
(nothing cached: a local store has no cache, and the S3 store's pack cache is emptied
first) and, on S3, "warm" (the pack cache holding what the write put through it).

Figures per phase: wall MB/s, the process's CPU seconds per GiB (all threads; reading
the source files and checking what is read back are left out), the CPU per GiB of each
stage, and the backend requests by type from the stack's stats layer. Stage CPU is
measured by timing layers spliced between the store's layers (bench/store_timing.py),
except chunking, which runs alone over the same data after each write (FastCDC with
the store's parameters). `rest` is the process CPU the stages do not cover; `moto` is
the S3 server's own CPU (another process). Prints two tables, writes the JSON record
to `bench/results/store-SIZE-TIMESTAMP.json` (or `--json`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
import xxhash

from bench import datasets
from bench.report import machine
from bench.store_timing import StageClock, instrument
from bench.systems import MotoServer
from blockstore.factory import create_store
from blockstore.volume import open_volume
from blockstore.volume.chunker import ChunkParams, StreamChunker
from rsyncd_py.fs.base import Stat
from rsyncd_py.fs.store import StoreProvider
from rsyncd_py.malloc_tuning import tune_malloc

GIB = 1 << 30
WRITE = 256 << 10  # what the receiver hands its file writer at a time
CHUNK_FEED = 1 << 20  # what the store's file writer hands the builder (WRITE_BATCH)
# name -> (on the moto S3 server, encrypted)
CONFIGS = {"local-plain": (False, False), "local-enc": (False, True), "s3-enc": (True, True)}
STAGES = ("chunk", "hash", "compress", "encrypt", "pack", "pack cache", "requests", "backend")
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class DataKind:
    """One data set: its files (absolute) and their names in the store."""

    name: str
    files: list[Path]
    names: list[bytes]
    digests: list[bytes]

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.files)


@dataclass(slots=True)
class Row:
    """One measured phase of one data kind on one configuration."""

    config: str
    data: str
    phase: str
    size: int
    files: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    system_s: float = 0.0  # kernel CPU (page faults, copies, syscalls), reading included
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    moto_cpu_s: float | None = None
    requests: dict[str, int] = field(default_factory=dict)

    def per_gib(self, seconds: float) -> float:
        return seconds * GIB / self.size

    def as_dict(self) -> dict[str, object]:
        covered = sum(self.stage_cpu_s.values())
        return {
            "config": self.config, "data": self.data, "phase": self.phase,
            "bytes": self.size, "files": self.files, "wall_s": round(self.wall_s, 3),
            "mb_per_s": round(self.size / self.wall_s / 1e6, 1),
            "cpu_s": round(self.cpu_s, 3), "cpu_s_per_gib": round(self.per_gib(self.cpu_s), 3),
            "system_cpu_s_per_gib": round(self.per_gib(self.system_s), 3),
            "stage_cpu_s_per_gib": {
                name: round(self.per_gib(s), 3) for name, s in sorted(self.stage_cpu_s.items())
            },
            "rest_cpu_s_per_gib": round(self.per_gib(self.cpu_s - covered), 3),
            "moto_cpu_s_per_gib": None if self.moto_cpu_s is None
            else round(self.per_gib(self.moto_cpu_s), 3),
            "requests": self.requests,
        }  # fmt: skip


def data_kinds(sets: datasets.DataSets) -> list[DataKind]:
    """The random file and the text tree, with their store names and digests."""
    kinds = []
    for name, top in (("random", sets.big), ("text", sets.text)):
        files = sorted(p for p in top.rglob("*") if p.is_file())
        names = [os.fsencode(p.relative_to(sets.root)) for p in files]
        kinds.append(DataKind(name, files, names, [_digest(p) for p in files]))
    return kinds


def _digest(path: Path) -> bytes:
    hasher = xxhash.xxh3_128()
    with path.open("rb") as source:
        while piece := source.read(1 << 20):
            hasher.update(piece)
    return hasher.digest()


async def write_files(provider: StoreProvider, kind: DataKind) -> float:
    """Push `kind` in one writable session, committed; return the source reading's CPU.

    A server gets its bytes from the network instead, so the reading is left out.
    """
    fs = await provider.open_session(writable=True)
    made: set[bytes] = set()
    reading = 0.0
    try:
        for path, name in zip(kind.files, kind.names, strict=True):
            for parent in reversed(Path(os.fsdecode(name)).parents[:-1]):
                if (directory := os.fsencode(parent)) not in made:
                    made.add(directory)
                    await fs.mkdir(directory, Stat(mode=stat.S_IFDIR | 0o755))
            writer = await fs.create(name)
            with path.open("rb") as source:
                while True:
                    start = time.thread_time()
                    piece = source.read(WRITE)
                    reading += time.thread_time() - start
                    if not piece:
                        break
                    await writer.write(piece)
            await writer.commit(Stat(mode=stat.S_IFREG | 0o644, size=path.stat().st_size))
    except BaseException:
        await fs.close(False)
        raise
    await fs.close(True)
    return reading


async def read_files(provider: StoreProvider, kind: DataKind) -> float:
    """Pull `kind` back and check each file; return the checking's CPU seconds."""
    fs = await provider.open_session(writable=False)
    checking = 0.0
    try:
        for name, expected in zip(kind.names, kind.digests, strict=True):
            reader = await fs.open_read(name)
            hasher = xxhash.xxh3_128()
            async for piece in reader.stream():
                start = time.thread_time()
                hasher.update(piece)
                checking += time.thread_time() - start
            await reader.close()
            if hasher.digest() != expected:
                raise RuntimeError(f"{os.fsdecode(name)}: read back differs from what was written")
    finally:
        await fs.close(True)
    return checking


def chunk_alone(params: ChunkParams, kind: DataKind) -> float:
    """Thread CPU seconds to chunk `kind` with FastCDC as the builder does, alone."""
    spent = 0.0
    for path in kind.files:
        chunker = StreamChunker(params)
        with path.open("rb") as source:
            while piece := source.read(CHUNK_FEED):
                start = time.thread_time()
                chunker.feed(piece)
                spent += time.thread_time() - start
        start = time.thread_time()
        chunker.finish()
        spent += time.thread_time() - start
    return spent


class OpenStore:
    """A freshly opened, instrumented volume with a provider and an event loop."""

    def __init__(self, url: str, key_file: str | None, state: Path,
                 moto: MotoServer | None) -> None:  # fmt: skip
        self.volume = open_volume(url, key_file=key_file, state_dir=state)
        self.clock: StageClock = instrument(self.volume)
        self.provider = StoreProvider(self.volume)
        self.moto = moto
        self.loop = asyncio.Runner(loop_factory=uvloop.new_event_loop)

    def measure(self, row: Row, phase: Coroutine[Any, Any, float]) -> Row:
        """Run `phase` and fill `row` with its wall, CPU, stage CPU and requests."""
        stats = self.volume.stack.stats if self.volume.stack is not None else None
        stages, requests = self.clock.snapshot(), stats.snapshot() if stats else None
        moto_cpu = self.moto.cpu() if self.moto else None
        cpu, system, wall = time.process_time(), os.times().system, time.perf_counter()
        excluded = self.loop.run(phase)
        row.wall_s = time.perf_counter() - wall
        row.cpu_s = time.process_time() - cpu - excluded
        row.system_s = os.times().system - system
        after = self.clock.snapshot()
        row.stage_cpu_s = {k: v - stages.get(k, 0.0) for k, v in after.items()}
        if stats and requests:
            row.requests = (stats.snapshot() - requests).to_dict()
        if self.moto and moto_cpu is not None:
            row.moto_cpu_s = self.moto.cpu() - moto_cpu
        return row

    def close(self) -> None:
        self.loop.run(self.provider.aclose())
        self.loop.close()


def run_config(name: str, kinds: list[DataKind], work: Path,
               moto: MotoServer | None) -> list[Row]:  # fmt: skip
    """Every phase of every data kind on one fresh store of configuration `name`."""
    on_s3, encrypt = CONFIGS[name]
    place = work / name
    place.mkdir()
    url = f"s3://{moto.bucket}/{name}-{os.getpid()}" if on_s3 and moto else str(place / "store")
    key_file = str(place / "key") if encrypt else None
    create_store(url, encrypt=encrypt, key_file=key_file)
    state = place / "state"
    server = moto if on_s3 else None
    rows = run_phase(OpenStore(url, key_file, state, server), name, "write", kinds)
    for phase in ("read-warm", "read-cold") if on_s3 else ("read-cold",):
        if phase == "read-cold":
            shutil.rmtree(state / "packcache", ignore_errors=True)
        rows += run_phase(OpenStore(url, key_file, state, server), name, phase, kinds)
    shutil.rmtree(place, ignore_errors=True)
    return rows


def run_phase(store: OpenStore, config: str, phase: str, kinds: list[DataKind]) -> list[Row]:
    """Write (then chunk alone) or read each data kind on `store`, then close it."""
    rows = []
    try:
        for kind in kinds:
            row = Row(config, kind.name, phase, kind.size, len(kind.files))
            job = write_files if phase == "write" else read_files
            rows.append(store.measure(row, job(store.provider, kind)))
            if phase == "write":
                row.stage_cpu_s["chunk"] = chunk_alone(store.volume.chunk_params, kind)
    finally:
        store.close()
    return rows


def tables(rows: list[dict[str, Any]]) -> str:
    """The throughput table and the per-stage CPU table."""
    lines = [
        f"{'config':<12} {'data':<7} {'phase':<10} {'MB/s':>7} {'CPU-s/GiB':>9} {'sys':>5} "
        f"{'PUT':>6} {'GET':>6} {'HEAD':>5} {'LIST':>5} {'MB up':>7} {'MB down':>7}"
    ]
    for r in rows:
        q = r["requests"]
        lines.append(
            f"{r['config']:<12} {r['data']:<7} {r['phase']:<10} {r['mb_per_s']:>7.0f} "
            f"{r['cpu_s_per_gib']:>9.2f} {r['system_cpu_s_per_gib']:>5.2f} "
            f"{q.get('puts', 0):>6} {q.get('gets', 0):>6} {q.get('heads', 0):>5} "
            f"{q.get('lists', 0):>5} {q.get('bytes_up', 0) / 1e6:>7.0f} "
            f"{q.get('bytes_down', 0) / 1e6:>7.0f}"
        )
    lines += [
        "",
        "CPU-s per GiB by stage (chunk: run alone; the others: timing layers; "
        "rest: process CPU not in a stage; moto: the S3 server process)",
    ]
    lines.append(
        f"{'config':<12} {'data':<7} {'phase':<10} "
        + " ".join(f"{s:>8}" for s in (*STAGES, "rest", "moto"))
    )
    for r in rows:
        cells = [r["stage_cpu_s_per_gib"].get(s) for s in STAGES]
        cells += [r["rest_cpu_s_per_gib"], r["moto_cpu_s_per_gib"]]
        lines.append(
            f"{r['config']:<12} {r['data']:<7} {r['phase']:<10} "
            + " ".join(f"{c:>8.2f}" if c is not None else f"{'-':>8}" for c in cells)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(datasets.SPECS), default="full")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated, from: " + ", ".join(CONFIGS)
    )
    parser.add_argument("--data-dir", type=Path, help="data set cache (as python -m bench)")
    parser.add_argument("--json", type=Path, help="JSON record path (default bench/results/)")
    args = parser.parse_args(argv)
    names = args.configs.split(",")
    if unknown := sorted(set(names) - set(CONFIGS)):
        parser.error(f"unknown config(s) {', '.join(unknown)}")
    tune_malloc()  # as serve and the stdio server do before any thread starts
    spec = datasets.SPECS[args.size]
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    data_root = args.data_dir or scratch / "rsyncd-py-bench" / f"data-{spec.name}"
    print(f"data sets ({spec.name}) in {data_root} ...", flush=True)
    kinds = data_kinds(datasets.ensure(data_root, spec))
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=scratch))
    moto = MotoServer() if any(CONFIGS[n][0] for n in names) else None
    rows: list[Row] = []
    try:
        if moto is not None:
            moto.start()
            os.environ.update(moto.env)
        for name in names:
            print(f"{name} ...", flush=True)
            rows += run_config(name, kinds, work, moto)
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    records = [row.as_dict() for row in rows]
    sizes = ", ".join(f"{k.name} {k.size:,} bytes in {len(k.files):,} file(s)" for k in kinds)
    load = (f"load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, "
            f"after {'/'.join(f'{v:.1f}' for v in load_after)}")  # fmt: skip
    print(f"\n{spec.name}: {sizes}; {load}\n")
    print(tables(records))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS_DIR / f"store-{spec.name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "load_before": load_before, "load_after": load_after,
        "options": {"size": spec.name, "configs": names, "write_piece": WRITE},
        "stage_method": "timing layers spliced between the store's layers (thread CPU, "
                        "exclusive); chunk: FastCDC run alone over the same data",
        "rows": records,
    }  # fmt: skip
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
