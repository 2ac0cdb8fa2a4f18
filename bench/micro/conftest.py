"""Print the MB/s of every micro-benchmark after the run (see throughput.py)."""

from __future__ import annotations

from typing import Any

from bench.micro.throughput import RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("throughput (median)")
    for label, mbps in RESULTS:
        terminalreporter.write_line(f"{label:<60} {mbps:10.1f} MB/s")
