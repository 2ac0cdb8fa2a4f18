"""MB/s for pytest-benchmark micro-benchmarks: measure, record, and list at the end.

`measure(benchmark, label, nbytes, fn, *args)` runs `fn(*args)` under pytest-benchmark
and records `nbytes` / median seconds; conftest.py prints the table after the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESULTS: list[tuple[str, float]] = []


def measure(benchmark: Any, label: str, nbytes: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Benchmark `fn(*args)`, which processes `nbytes`; return its result."""
    result = benchmark.pedantic(fn, args=args, rounds=5, warmup_rounds=1, iterations=1)
    median = benchmark.stats.stats.median
    mbps = nbytes / median / 1e6
    benchmark.extra_info["MB/s"] = round(mbps, 1)
    RESULTS.append((label, mbps))
    return result
