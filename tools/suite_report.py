#!/usr/bin/env python3
"""Summarise a CPU report of the test suite (tests/helpers/cpu_budget.py).

    RSYNCD_PY_CPU_REPORT=/tmp/cpu.json make test
    python3 tools/suite_report.py /tmp/cpu.json                 # totals, top 20 tests
    python3 tools/suite_report.py /tmp/cpu.json --top 50 --by file --fixtures 15
    python3 tools/suite_report.py /tmp/after.json --compare /tmp/before.json

The quiet-machine wall estimate is the whole run's CPU (workers, their children and
the controller) divided by the 2 cores CI has: on a shared machine the measured wall
time mostly says how busy the neighbours were.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

CORES = 2


def group_of(nodeid: str, by: str) -> str:
    """The directory (or file) a test belongs to."""
    path = nodeid.split("::", 1)[0]
    return path if by == "file" else path.rsplit("/", 1)[0]


def totals_by(tests: list[dict[str, Any]], by: str) -> dict[str, tuple[float, int]]:
    """CPU seconds and test count per group."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for test in tests:
        entry = sums[group_of(test["nodeid"], by)]
        entry[0] += test["cpu"]
        entry[1] += 1
    return {name: (cpu, int(count)) for name, (cpu, count) in sums.items()}


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def print_header(report: dict[str, Any]) -> None:
    tests = report["tests"]
    in_tests = sum(t["cpu"] for t in tests)
    total = report["total_cpu"]
    outcomes: dict[str, int] = defaultdict(int)
    for test in tests:
        outcomes[test["outcome"]] += 1
    print(f"run: pytest {' '.join(report['argv'])}")
    print(
        f"tests: {len(tests)} ({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))})"
    )
    print(
        f"CPU: {total:.1f} s in all ({in_tests:.1f} s in tests, {total - in_tests:.1f} s "
        "outside them: start-up, collection, controller)"
    )
    print(
        f"quiet-machine wall estimate: {minutes(total / CORES)} (CPU / {CORES}); "
        f"measured wall {minutes(report['wall'])}, load average "
        f"{report['loadavg_start'][0]:.1f} at the start, {report['loadavg_end'][0]:.1f} "
        "at the end"
    )
    for name, worker in sorted(report["workers"].items()):
        print(
            f"  worker {name}: {worker['tests']} tests, self {worker['self_cpu']:.1f} s, "
            f"children {worker['children_cpu']:.1f} s, wall {minutes(worker['wall'])}"
        )


def print_groups(
    report: dict[str, Any], by: str, before: dict[str, Any] | None, limit: int
) -> None:
    now = totals_by(report["tests"], by)
    old = totals_by(before["tests"], by) if before else {}
    total = sum(cpu for cpu, _ in now.values()) or 1.0
    print(f"\nCPU by {by}:")
    header = f"  {'cpu s':>8} {'share':>6} {'tests':>6} {'s/test':>7}"
    if before:
        header += f" {'before':>8} {'tests':>6} {'saved':>8}"
    print(header + "  " + by)
    names = sorted(set(now) | set(old), key=lambda n: -max(now.get(n, (0, 0))[0], 0))
    for name in names[:limit]:
        cpu, count = now.get(name, (0.0, 0))
        line = f"  {cpu:8.1f} {100 * cpu / total:5.1f}% {count:6d} {cpu / max(count, 1):7.2f}"
        if before:
            old_cpu, old_count = old.get(name, (0.0, 0))
            line += f" {old_cpu:8.1f} {old_count:6d} {old_cpu - cpu:8.1f}"
        print(f"{line}  {name}")
    if before:
        old_total = sum(cpu for cpu, _ in old.values())
        print(
            f"  in tests: {total:.1f} s now, {old_total:.1f} s before; whole run "
            f"{report['total_cpu']:.1f} s now, {before['total_cpu']:.1f} s before "
            f"(quiet wall {minutes(report['total_cpu'] / CORES)} vs "
            f"{minutes(before['total_cpu'] / CORES)})"
        )


def print_top(report: dict[str, Any], count: int) -> None:
    print(f"\ntop {count} tests by CPU:")
    print(f"  {'cpu s':>7} {'setup':>6} {'call':>6} {'tdown':>6} {'child%':>6} {'wall':>6}  test")
    for test in sorted(report["tests"], key=lambda t: -t["cpu"])[:count]:
        share = 100 * test["children_cpu"] / test["cpu"] if test["cpu"] > 0 else 0.0
        print(
            f"  {test['cpu']:7.2f} {test['setup_cpu']:6.2f} {test['call_cpu']:6.2f} "
            f"{test['teardown_cpu']:6.2f} {share:5.0f}% {test['wall']:6.1f}  {test['nodeid']}"
        )


def print_fixtures(report: dict[str, Any], count: int) -> None:
    print(f"\ntop {count} fixtures by set-up CPU (exclusive of the fixtures they use):")
    fixtures = sorted(report["fixtures"].items(), key=lambda item: -item[1]["cpu"])
    for name, figures in fixtures[:count]:
        per = figures["cpu"] / max(figures["count"], 1)
        print(f"  {figures['cpu']:8.1f} s {figures['count']:6d} x {per:6.3f} s  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a JSON file written by the cpu_budget plugin")
    parser.add_argument("--top", type=int, default=20, help="how many tests to list")
    parser.add_argument("--by", choices=("dir", "file"), default="dir")
    parser.add_argument("--groups", type=int, default=40, help="how many groups to list")
    parser.add_argument("--fixtures", type=int, default=10, help="how many fixtures to list")
    parser.add_argument("--compare", type=Path, help="an earlier report to compare with")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    before = json.loads(args.compare.read_text()) if args.compare else None
    print_header(report)
    print_groups(report, args.by, before, args.groups)
    print_top(report, args.top)
    if args.fixtures:
        print_fixtures(report, args.fixtures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
