"""Summaries of the runs: the stdout table and the JSON record with machine and versions.

Per scenario and system: the median wall time (with min-max), the ratio of that median
to stock rsync's in the same run, and the medians of server CPU, server peak RSS, bytes
on the wire (client sent + received), literal/matched data and backend requests. A
cell is "FAIL" when any repetition failed or was not verified; the JSON keeps every
run, errors included, so a failure can be read back.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.runner import RunResult, Scenario
from bench.systems import CIPHER, System

_PACKAGES = ("asyncssh", "uvloop", "numpy", "xxhash", "zstandard", "lz4", "pyfastcdc",
             "cryptography", "boto3", "moto")  # fmt: skip
_REQUEST_ORDER = ("puts", "gets", "heads", "lists", "deletes")


def _median(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(
    results: list[RunResult], scenarios: list[Scenario], systems: list[System]
) -> list[dict[str, object]]:
    """One row per (scenario, system) with the medians and the ratio to stock rsync."""
    rows: list[dict[str, object]] = []
    for scenario in scenarios:
        baseline: float | None = None
        for system in systems:
            runs = [r for r in results if r.scenario == scenario.name and r.system == system.name]
            if not runs:
                continue
            ok = all(r.ok for r in runs)
            walls = [r.wall_s for r in runs]
            wall = statistics.median(walls)
            if system.name == "stock" and ok:
                baseline = wall
            row: dict[str, object] = {
                "scenario": scenario.name, "title": scenario.title, "system": system.name,
                "ok": ok, "errors": sorted({r.error for r in runs if r.error}),
                "reps": len(runs), "wall_s": wall, "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "ratio": wall / baseline if ok and baseline else None,
                "cpu_s": _median([r.cpu_s for r in runs]),
                "peak_rss": _median([r.peak_rss for r in runs]),
                "wire_bytes": _median([(r.bytes_sent or 0) + (r.bytes_received or 0)
                                       for r in runs if r.bytes_sent is not None]),
                "literal": _median([r.literal for r in runs]),
                "matched": _median([r.matched for r in runs]),
                "requests": _median_counts([r.requests for r in runs]),
                "http_requests": _median_counts([r.http_requests for r in runs]),
                "backend_cpu_s": _median([r.backend_cpu_s for r in runs]),
            }  # fmt: skip
            rows.append(row)
    return rows


def _median_counts(samples: list[dict[str, int] | None]) -> dict[str, float] | None:
    present = [s for s in samples if s is not None]
    if not present:
        return None
    keys = sorted({k for s in present for k in s})
    return {k: statistics.median(s.get(k, 0) for s in present) for k in keys}


def _mb(value: object) -> str:
    return "-" if value is None else f"{float(value) / 1e6:,.1f}"  # type: ignore[arg-type]


def _requests_cell(row: dict[str, object]) -> str:
    store = row["requests"]
    if isinstance(store, dict):
        parts = [f"{k[:-1].upper()} {store[k]:g}" for k in _REQUEST_ORDER if store.get(k)]
        return " ".join(parts) or "none"
    http = row["http_requests"]
    if isinstance(http, dict):
        return "http " + " ".join(f"{k} {v:g}" for k, v in sorted(http.items()))
    return "-"


def table(rows: list[dict[str, object]]) -> str:
    """The human-readable table (one line per scenario and system)."""
    header = (f"{'scenario':<11} {'system':<13} {'wall s (min-max)':>20} {'ratio':>6} "
              f"{'srv CPU s':>9} {'srv RSS MB':>10} {'wire MB':>9} {'literal MB':>10} "
              f"{'matched MB':>10}  requests")  # fmt: skip
    lines = [header, "-" * len(header)]
    last = None
    for row in rows:
        if last is not None and row["scenario"] != last:
            lines.append("")
        last = row["scenario"]
        if row["ok"]:
            wall = f"{row['wall_s']:.2f} ({row['wall_min_s']:.2f}-{row['wall_max_s']:.2f})"
        else:
            wall = "FAIL"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        cpu = f"{row['cpu_s']:.2f}" if row["cpu_s"] is not None else "-"
        lines.append(
            f"{row['scenario']:<11} {row['system']:<13} {wall:>20} {ratio:>6} {cpu:>9} "
            f"{_mb(row['peak_rss']):>10} {_mb(row['wire_bytes']):>9} {_mb(row['literal']):>10} "
            f"{_mb(row['matched']):>10}  {_requests_cell(row)}"
        )
    failures = [row for row in rows if not row["ok"]]
    if failures:
        lines.append("")
        for row in failures:
            lines.append(f"FAIL {row['scenario']} on {row['system']}: {'; '.join(row['errors'])}")  # type: ignore[arg-type]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """CPU, memory, kernel and tool versions of this machine."""
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    versions["rsync"] = _first_line(["rsync", "--version"])
    versions["ssh"] = _first_line(["ssh", "-V"])
    versions["rsyncd-py commit"] = _first_line(["git", "-C", str(Path(__file__).parent),
                                                 "rev-parse", "--short", "HEAD"])  # fmt: skip
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_kib": int(mem),
        "kernel": platform.release(), "versions": versions,
    }  # fmt: skip


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    return (done.stdout or done.stderr).strip().split("\n", 1)[0]


def record(
    path: Path,
    *,
    options: dict[str, object],
    rows: list[dict[str, object]],
    results: list[RunResult],
    systems: list[System],
) -> None:
    """Write the JSON record: when, machine, options, systems, summary rows, every run."""
    document = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": {**options, "cipher": CIPHER, "client": "rsync -a --stats -e 'ssh -c "
                    f"{CIPHER}'"},
        "systems": {s.name: s.label for s in systems},
        "summary": rows,
        "runs": [r.as_dict() for r in results],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
