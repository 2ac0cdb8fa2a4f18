"""`python -m bench.store --size small` end to end, so the store benchmark cannot rot.

Runs the real thing once (local stores on tmpfs, plain and encrypted, and an encrypted
store on a moto S3 server the benchmark starts itself) on MiB-sized data and checks
that both tables and the JSON record are produced, with a row for every phase, the
stages each configuration has, and the requests a write and a cold read must make.
Every file is read back and checked by the benchmark itself (it exits non-zero if one
differs). Timings are recorded but never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.datasets import SPECS

ROOT = Path(__file__).resolve().parents[2]
PHASES = {
    "local-plain": ("write", "read-cold"),
    "local-enc": ("write", "read-cold"),
    "s3-enc": ("write", "read-warm", "read-cold"),
}
EXPECTED = {
    (config, data, phase)
    for config, phases in PHASES.items()
    for data in ("random", "text")
    for phase in phases
}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    work = tmp_path_factory.mktemp("store-bench")
    record = work / "store.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.store", "--size", "small",
         "--data-dir", str(work / "data"), "--json", str(record)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(record.read_text())


def test_both_tables_have_a_row_per_phase(bench_run):
    stdout, _ = bench_run
    rows = [tuple(line.split()[:3]) for line in stdout.splitlines()]
    for key in EXPECTED:
        assert rows.count(key) == 2, key  # once in each table
    assert "CPU-s per GiB by stage" in stdout


def test_record_has_every_phase_with_its_sizes(bench_run):
    _, record = bench_run
    spec = SPECS["small"]
    assert record["machine"]["cores"] >= 1
    assert len(record["load_before"]) == 3
    assert "timing layers" in record["stage_method"]
    got = {(r["config"], r["data"], r["phase"]): r for r in record["rows"]}
    assert set(got) == EXPECTED
    for (_config, data, _phase), row in got.items():
        if data == "random":
            assert (row["bytes"], row["files"]) == (spec.big_bytes, 1), row
        else:
            assert (row["bytes"], row["files"]) == (spec.text_bytes, spec.text_files), row
        assert row["wall_s"] > 0 and row["cpu_s"] > 0, row


def test_stages_are_the_configurations_layers(bench_run):
    _, record = bench_run
    for row in record["rows"]:
        stages = set(row["stage_cpu_s_per_gib"])
        assert {"compress", "pack", "requests", "backend"} <= stages, row
        assert ("encrypt" in stages) == row["config"].endswith("-enc"), row
        assert ("chunk" in stages and "hash" in stages) == (row["phase"] == "write"), row
        if row["config"].startswith("s3"):
            assert "pack cache" in stages and row["moto_cpu_s_per_gib"] is not None, row
        else:
            assert "pack cache" not in stages and row["moto_cpu_s_per_gib"] is None, row


def test_requests_are_what_each_phase_implies(bench_run):
    _, record = bench_run
    for row in record["rows"]:
        requests = row["requests"]
        if row["phase"] == "write":
            # packs, the snapshot: at least the data's bytes go up (random does not compress)
            assert requests["puts"] >= 2 and requests["bytes_down"] < row["bytes"] // 10, row
            if row["data"] == "random":
                assert requests["bytes_up"] >= row["bytes"], row
        elif row["phase"] == "read-cold":
            # every block comes from the bucket: at least the stored form of the data
            assert requests["puts"] == 0 and requests["gets"] >= 2, row
            if row["data"] == "random":
                assert requests["bytes_down"] >= row["bytes"], row
        else:  # read-warm: blocks come from the pack cache, not the bucket
            assert requests["puts"] == 0 and requests["bytes_down"] < row["bytes"] // 10, row
