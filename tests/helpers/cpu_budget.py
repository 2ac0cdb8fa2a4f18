"""pytest plugin: CPU seconds per test, so the suite can be sized against its CI budget.

Off unless ``RSYNCD_PY_CPU_REPORT=FILE`` is set; then every test's setup, call and
teardown are measured and FILE is written at the end of the session (JSON, or CSV when
FILE ends in ``.csv``). `tools/suite_report.py` summarises a JSON report.

Theory of operation. Wall time on the shared 2-core machine says little (other work runs
beside the suite), so this counts CPU: the test process's own (``getrusage(SELF)``) plus
its children's. Children are counted two ways that add up without double counting:
children already reaped are in ``getrusage(CHILDREN)``, and live descendants (a session's
moto server, a module's ``rsyncd-py serve``, an rsync still running) are found by a scan
of ``/proc`` for processes whose parent chain leads here, each read as utime + stime +
cutime + cstime. A child that ends between two samples moves its whole total from the
scan into the rusage sum, so a difference of two samples is exactly the CPU spent in
between, whoever spent it. The scan costs about a millisecond; its own CPU is measured
and left out of the test process's figure.

Each phase (setup, call, teardown) is one interval, so a test's figure includes the
fixtures it was the first to need (a session fixture is charged to the first test that
uses it). Fixture set-ups are also measured one by one (exclusive of the fixtures they
request) and summed per fixture name. Under pytest-xdist the workers measure and attach
their figures to each teardown report (``user_properties``) and send per-worker totals
and fixture sums in ``workeroutput``; the controller writes the file.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV = "RSYNCD_PY_CPU_REPORT"
_PROPERTY = "rsyncd_py_cpu"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class DescendantScan:
    """CPU of the live descendants of this process, found by their parent ids in /proc.

    A process once found not to descend from us is never read again: pids are not
    reused within a test session (pid_max is in the millions), so the scan reads only
    the processes started since the last one, plus our own descendants.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.foreign: set[int] = set()

    def cpu(self) -> float:
        """Seconds of CPU (self and reaped children) of every live descendant."""
        parent_of: dict[int, int] = {}
        cpu_of: dict[int, float] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in self.foreign:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat_file:
                    data = stat_file.read()
            except OSError:
                continue  # gone since the listing
            # after "(comm)": state ppid ...; utime stime cutime cstime are 12-15 there
            fields = data[data.rindex(b")") + 2 :].split()
            parent_of[int(name)] = int(fields[1])
            cpu_of[int(name)] = sum(int(x) for x in fields[11:15]) / _CLK_TCK
        total = 0.0
        for pid, cpu in cpu_of.items():
            if self._descends(pid, parent_of):
                total += cpu
            else:
                self.foreign.add(pid)
        return total

    def _descends(self, pid: int, parent_of: dict[int, int]) -> bool:
        for _ in range(64):
            pid = parent_of.get(pid, 0)
            if pid == self.pid:
                return True
            if pid <= 1:
                return False
        return False


@dataclass(frozen=True)
class Sample:
    """Cumulative CPU of this process and of all its children at one moment."""

    self_cpu: float
    children_cpu: float
    wall: float

    def __sub__(self, earlier: Sample) -> Sample:
        return Sample(
            self.self_cpu - earlier.self_cpu,
            self.children_cpu - earlier.children_cpu,
            self.wall - earlier.wall,
        )


class Meter:
    """Takes `Sample`s; the CPU the samples themselves cost is left out of ``self_cpu``."""

    def __init__(self) -> None:
        self.descendants = DescendantScan()
        self.overhead = 0.0

    def sample(self) -> Sample:
        started = time.thread_time()
        own = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        live = self.descendants.cpu()
        self.overhead += time.thread_time() - started
        return Sample(
            own.ru_utime + own.ru_stime - self.overhead,
            reaped.ru_utime + reaped.ru_stime + live,
            time.monotonic(),
        )


class WorkerRecorder:
    """Measures the tests this process runs (an xdist worker, or pytest without xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.meter = Meter()
        self.started = time.monotonic()
        self.phases: dict[str, Sample] = {}
        self.fixtures: dict[str, list[float]] = {}  # "scope:name" -> [count, cpu, wall]
        self.tests = 0

    def _measure(self, when: str) -> Generator[None, Any, Any]:
        before = self.meter.sample()
        try:
            return (yield)
        finally:
            self.phases[when] = self.meter.sample() - before

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        self.phases = {}
        return (yield from self._measure("setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._measure("call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._measure("teardown"))

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        before = self.meter.sample()
        try:
            return (yield)
        finally:
            spent = self.meter.sample() - before
            entry = self.fixtures.setdefault(f"{fixturedef.scope}:{fixturedef.argname}", [0, 0, 0])
            entry[0] += 1
            entry[1] += max(0.0, spent.self_cpu + spent.children_cpu)
            entry[2] += spent.wall

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "teardown":
            self.tests += 1
            figures = {
                when: [round(s.self_cpu, 4), round(s.children_cpu, 4), round(s.wall, 4)]
                for when, s in self.phases.items()
            }
            figures["worker"] = os.environ.get("PYTEST_XDIST_WORKER", "main")
            report.user_properties.append((_PROPERTY, figures))
        return report

    def totals(self) -> dict[str, float]:
        """This process's CPU since it started (imports included), with its children's."""
        spent = self.meter.sample() - Sample(0.0, 0.0, self.started)
        return {
            "self_cpu": round(spent.self_cpu, 3),
            "children_cpu": round(spent.children_cpu, 3),
            "wall": round(spent.wall, 3),
            "tests": self.tests,
            "overhead": round(self.meter.overhead, 3),
        }

    @pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller writes the file
            workeroutput[_PROPERTY] = json.dumps(
                {"totals": self.totals(), "fixtures": self.fixtures}
            )


class ReportWriter:
    """Collects the figures from test reports and writes the file (controller side)."""

    def __init__(self, config: pytest.Config, path: Path, local: WorkerRecorder | None) -> None:
        self.config = config
        self.path = path
        self.local = local  # set when this process also runs the tests (no xdist)
        self.meter = Meter()
        self.started = time.monotonic()
        self.load_start = os.getloadavg()
        self.outcomes: dict[str, str] = {}
        self.tests: list[dict[str, Any]] = []
        self.workers: dict[str, Any] = {}
        self.fixtures: dict[str, list[float]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.outcomes[report.nodeid] = report.outcome
        if report.when == "teardown":
            if report.failed:
                self.outcomes[report.nodeid] = "error"
            for name, figures in report.user_properties:
                if name == _PROPERTY:
                    self._add(report.nodeid, figures)

    def _add(self, nodeid: str, figures: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "nodeid": nodeid,
            "worker": figures["worker"],
            "outcome": self.outcomes.pop(nodeid, "passed"),
        }
        cpu = self_cpu = wall = 0.0
        for when in ("setup", "call", "teardown"):
            own, children, phase_wall = figures.get(when, (0.0, 0.0, 0.0))
            record[f"{when}_cpu"] = round(own + children, 4)
            cpu += own + children
            self_cpu += own
            wall += phase_wall
        record.update(
            cpu=round(cpu, 4),
            self_cpu=round(self_cpu, 4),
            children_cpu=round(cpu - self_cpu, 4),
            wall=round(wall, 4),
        )
        self.tests.append(record)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        data = getattr(node, "workeroutput", {}).get(_PROPERTY)
        if data is not None:
            self._merge(node.gateway.id, json.loads(data))

    def _merge(self, worker: str, data: dict[str, Any]) -> None:
        self.workers[worker] = data["totals"]
        for name, (count, cpu, wall) in data["fixtures"].items():
            entry = self.fixtures.setdefault(name, [0, 0.0, 0.0])
            entry[0] += count
            entry[1] += cpu
            entry[2] += wall

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.local is not None:
            self._merge("main", {"totals": self.local.totals(), "fixtures": self.local.fixtures})
        spent = self.meter.sample() - Sample(0.0, 0.0, self.started)
        own = spent.self_cpu if self.local is None else 0.0  # else counted as a worker
        # xdist workers are this process's children: `own` is only the controller's own CPU
        total = own + sum(w["self_cpu"] + w["children_cpu"] for w in self.workers.values())
        report = {
            "version": 1,
            "argv": sys.argv[1:],
            "wall": round(spent.wall, 2),
            "total_cpu": round(total, 2),
            "controller_cpu": round(own, 2),
            "loadavg_start": self.load_start,
            "loadavg_end": os.getloadavg(),
            "workers": self.workers,
            "fixtures": {
                name: {"count": count, "cpu": round(cpu, 3), "wall": round(wall, 3)}
                for name, (count, cpu, wall) in sorted(self.fixtures.items())
            },
            "tests": self.tests,
        }
        self._write(report)

    def _write(self, report: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".csv":
            with self.path.open("w", newline="") as out:
                columns = list(report["tests"][0]) if report["tests"] else ["nodeid"]
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
                writer.writerows(report["tests"])
        else:
            self.path.write_text(json.dumps(report, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    is_worker = hasattr(config, "workerinput")
    is_controller = not is_worker and bool(getattr(config.option, "numprocesses", None))
    recorder = None
    if not is_controller:
        recorder = WorkerRecorder(config)
        config.pluginmanager.register(recorder, "cpu_budget_recorder")
    if not is_worker:
        writer = ReportWriter(config, Path(target).absolute(), recorder)
        config.pluginmanager.register(writer, "cpu_budget_writer")
