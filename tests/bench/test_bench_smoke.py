"""`python -m bench --size small` end to end, so the benchmark cannot rot.

Runs the real thing once (stock rsync behind a throwaway sshd, rsyncd-py on a local
store and on moto S3, every scenario) on MiB-sized data and checks that the table and
the JSON record are produced and that every transfer arrived intact and moved what it
should (literal vs matched data). Timings are recorded but never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.datasets import SPECS

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("stock", "rsyncd-local", "rsyncd-s3")
SCENARIOS = ("push_new", "push_small", "push_text", "repush", "push_delta", "pull_full",
             "pull_delta")  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or (not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists()),
    reason="the stock baseline needs root and OpenSSH's sshd",
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    work = tmp_path_factory.mktemp("bench")
    record = work / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "small", "--reps", "1",
         "--data-dir", str(work / "data"), "--json", str(record)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(record.read_text())


def test_table_has_a_row_per_scenario_and_system(bench_run):
    stdout, _ = bench_run
    rows = {tuple(line.split()[:2]) for line in stdout.splitlines() if line.split()[:1]}
    for scenario in SCENARIOS:
        for system in SYSTEMS:
            assert (scenario, system) in rows, (scenario, system)
    assert "FAIL" not in stdout


def test_record_names_machine_versions_and_options(bench_run):
    _, record = bench_run
    assert record["machine"]["cores"] >= 1
    assert "rsync" in record["machine"]["versions"]["rsync"]
    assert record["options"]["cipher"] == "aes128-gcm@openssh.com"
    assert set(record["systems"]) == set(SYSTEMS)
    assert {(r["scenario"], r["system"]) for r in record["summary"]} == {
        (scenario, system) for scenario in SCENARIOS for system in SYSTEMS
    }


def test_every_transfer_was_verified(bench_run):
    _, record = bench_run
    runs = record["runs"]
    assert len(runs) == len(SCENARIOS) * len(SYSTEMS)
    for run in runs:
        assert run["ok"] and run["verified"], run
        assert run["wall_s"] > 0 and run["cpu_s"] is not None, run


def test_literal_and_matched_data_are_what_each_scenario_implies(bench_run):
    _, record = bench_run
    spec = SPECS["small"]
    for run in record["runs"]:
        name = run["scenario"]
        if name in ("push_new", "pull_full"):
            assert (run["literal"], run["matched"]) == (spec.big_bytes, 0), run
        elif name == "push_small":
            assert run["literal"] == spec.small_files * 4096, run
        elif name == "repush":
            assert (run["literal"], run["files_transferred"]) == (0, 0), run
        elif name in ("push_delta", "pull_delta"):
            # 1% of the 4 KiB regions changed: most of the file matches the basis
            assert run["matched"] > spec.big_bytes // 2, run
            assert 0 < run["literal"] < spec.big_bytes // 2, run


def test_store_systems_report_backend_requests(bench_run):
    _, record = bench_run
    for run in record["runs"]:
        if run["system"] != "stock" and run["scenario"].startswith("push_"):
            assert run["requests"] and run["requests"]["puts"] > 0, run
        if run["system"] == "rsyncd-s3":
            assert run["http_requests"] is not None, run
