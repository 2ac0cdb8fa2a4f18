"""Run every scenario against every system, interleaved, and check each transfer.

Theory of operation. A repetition starts every system fresh (empty directory, new
store) and then walks the scenarios in order; each scenario runs once per system
(A B C, then the next scenario), so machine noise is spread across the systems.
Scenarios build on each other's state, as a user's backups do: the initial pushes
fill the destination, the re-push finds it unchanged, the delta push updates the big
file in place of its older version, and the pulls read that file back (into an empty
directory, and over the original as a basis). Only the client command is timed; its
`--stats` give the bytes on the wire and the literal/matched split. After each run the
result is checked outside the timing: a push by a dry run with `--checksum` (the
server must find every file identical to the source), a pull by hashing what arrived.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import xxhash

from bench.datasets import DataSets
from bench.profiles import Profiler
from bench.systems import System


@dataclass(frozen=True, slots=True)
class Scenario:
    """One client command: push `local` to `remote`, or pull `remote` into a fresh dir."""

    name: str
    kind: str  # "push" | "pull"
    local: str  # a data set directory (push source)
    remote: str  # the path on the server
    expect: str  # push: the data set the server then holds; pull: what it should hold
    basis: bool = False  # pull: start from the original big file as a basis
    title: str = ""


def scenarios(sets: DataSets) -> list[Scenario]:
    """The benchmark's scenarios, in the order they run (see the module docstring)."""
    spec = sets.spec
    big = _size(spec.big_bytes)
    files = f"{spec.small_files:,} files of 4 KiB"
    return [
        Scenario("push_new", "push", "big", "big", "big", title=f"initial push, new {big} file"),
        Scenario("push_small", "push", "small", "small", "small", title=f"initial push, {files}"),
        Scenario("push_text", "push", "text", "text", "text",
                 title=f"initial push, {_size(spec.text_bytes)} text tree"),
        Scenario("repush", "push", "small", "small", "small",
                 title=f"unchanged re-push, {files}"),
        Scenario("push_delta", "push", "delta", "big", "delta",
                 title=f"delta push, {big} with 1% changed"),
        Scenario("pull_full", "pull", "", "big", "delta", title=f"full pull, {big}"),
        Scenario("pull_delta", "pull", "", "big", "delta", basis=True,
                 title=f"delta pull, {big} with 1% changed"),
    ]  # fmt: skip


@dataclass
class RunResult:
    """One client run: what it cost and whether the data arrived intact."""

    scenario: str
    system: str
    rep: int
    ok: bool
    error: str = ""
    wall_s: float = 0.0
    cpu_s: float | None = None
    peak_rss: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    literal: int | None = None
    matched: int | None = None
    files_transferred: int | None = None
    requests: dict[str, int] | None = None
    http_requests: dict[str, int] | None = None
    backend_cpu_s: float | None = None
    verified: bool = False
    started_ns: int = 0
    ended_ns: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_STATS = {
    "literal": re.compile(r"Literal data: ([\d,]+)"),
    "matched": re.compile(r"Matched data: ([\d,]+)"),
    "bytes_sent": re.compile(r"Total bytes sent: ([\d,]+)"),
    "bytes_received": re.compile(r"Total bytes received: ([\d,]+)"),
    "files_transferred": re.compile(r"Number of regular files transferred: ([\d,]+)"),
}


@dataclass
class Runner:
    """Runs scenarios against systems (see the module docstring)."""

    sets: DataSets
    systems: list[System]
    work: Path
    rsync: str = field(default_factory=lambda: shutil.which("rsync") or "rsync")
    progress: Callable[[str], None] = print
    profiler: Profiler | None = None  # --profile: py-spy on servers with one process
    # (system, remote path) -> the data set its last successful push left there, so a
    # pull is checked against what the server really holds when scenarios are skipped
    held: dict[tuple[str, str], str] = field(default_factory=dict)

    def run(self, selected: list[Scenario], reps: int) -> list[RunResult]:
        results: list[RunResult] = []
        for rep in range(reps):
            self.held.clear()
            for system in self.systems:
                system.start()
                self._warm_up(system)
            try:
                for scenario in selected:
                    for system in self.systems:
                        try:
                            result = self.run_one(system, scenario, rep)
                        except Exception as exc:  # a server died (e.g. OOM-killed): go on
                            result = RunResult(scenario.name, system.name, rep, ok=False,
                                               error=f"harness: {exc!r}")  # fmt: skip
                        results.append(result)
                        self.progress(_progress_line(result))
                for system in self.systems:
                    with contextlib.suppress(Exception):  # a dead server has no snapshots
                        _attribute_commits(system, [r for r in results if r.rep == rep])
            finally:
                for system in self.systems:
                    system.stop()
        return results

    def _client(self, system: System, *args: str) -> list[str]:
        return [self.rsync, "-a", "-e", system.rsh, *system.rsync_args(), *args]

    def run_one(self, system: System, scenario: Scenario, rep: int) -> RunResult:
        """Run `scenario` once on `system`, measure it, then check what arrived."""
        result = RunResult(scenario.name, system.name, rep, ok=False)
        if scenario.kind == "push":
            source = f"{self.sets.root / scenario.local}/"
            target = system.remote(f"{scenario.remote}/")
        else:
            local = self._pull_dir(system, scenario)
            source, target = system.remote(f"{scenario.remote}/"), f"{local}/"
        command = self._client(system, "--stats", source, target)
        with self._profiled(system, f"{scenario.name}-{system.name}-rep{rep + 1}"), \
                system.measure() as measures:
            result.started_ns = time.time_ns()
            started = time.monotonic()
            done = _rsync(command)
            result.wall_s = time.monotonic() - started
        result.ended_ns = time.time_ns()
        for name, pattern in _STATS.items():
            if found := pattern.search(done.stdout):
                setattr(result, name, int(found.group(1).replace(",", "")))
        result.cpu_s, result.peak_rss = measures.cpu_s, measures.peak_rss
        result.http_requests = measures.http_requests
        result.backend_cpu_s = measures.backend_cpu_s
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            result.error = f"rsync exit {done.returncode}: {tail}"
            return result
        if scenario.kind == "push":
            problem = self._check_push(system, scenario)
            if problem is None:
                self.held[system.name, scenario.remote] = scenario.expect
        else:
            expect = self.held.get((system.name, scenario.remote), scenario.expect)
            problem = self._check_pull(expect, Path(target))
        result.verified = problem is None
        result.ok = problem is None
        result.error = problem or ""
        if scenario.kind == "pull":
            shutil.rmtree(target, ignore_errors=True)
        return result

    def _warm_up(self, system: System) -> None:
        """One untimed push and one pull of an empty directory: a long-lived server has
        long since imported its modules (the first rsyncd-py session imports the roles
        and checksum libraries, 0.2-0.3 s) and sshd has its files in the page cache."""
        empty = self.work / "empty"
        empty.mkdir(exist_ok=True)
        for args in ([f"{empty}/", system.remote("warmup/")],
                     ["--list-only", system.remote("warmup/")]):
            done = _rsync(self._client(system, *args))
            if done.returncode != 0:
                raise RuntimeError(f"{system.name}: warm-up failed: {done.stderr.strip()}")

    def _profiled(self, system: System, name: str) -> contextlib.AbstractContextManager[None]:
        pid = system.server_pid
        if self.profiler is None or pid is None:
            return contextlib.nullcontext()
        return self.profiler.record(pid, name)

    def _pull_dir(self, system: System, scenario: Scenario) -> Path:
        local = self.work / "pulls" / system.name
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        if scenario.basis:
            # rsync writes a temporary file and renames it: a linked original is untouched
            for path in self.sets.big.iterdir():
                try:
                    os.link(path, local / path.name)
                except OSError:  # another file system
                    shutil.copy2(path, local / path.name)
        return local

    def _check_push(self, system: System, scenario: Scenario) -> str | None:
        """The server must find every source file identical (checksums) to its copy."""
        source = f"{self.sets.root / scenario.local}/"
        command = self._client(system, "-n", "--checksum", "--itemize-changes", source,
                               system.remote(f"{scenario.remote}/"))  # fmt: skip
        done = _rsync(command)
        if done.returncode != 0:
            return f"check failed: rsync exit {done.returncode}: {done.stderr.strip()[-300:]}"
        differing = [line for line in done.stdout.splitlines() if line[:1] in ("<", "c")]
        if differing:
            return f"{len(differing)} item(s) differ after the push, e.g. {differing[0]!r}"
        return None

    def _check_pull(self, expect: str, local: Path) -> str | None:
        """What arrived must equal data set `expect`, file for file."""
        expected = self.sets.root / expect
        for path in sorted(p for p in expected.rglob("*") if p.is_file()):
            got = local / path.relative_to(expected)
            if not got.is_file():
                return f"{got.relative_to(local)} missing after the pull"
            if _digest(got) != _digest(path):
                return f"{got.relative_to(local)} differs after the pull"
        return None


def _rsync(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, capture_output=True, text=True, errors="replace")


def _attribute_commits(system: System, results: list[RunResult]) -> None:
    """Give each snapshot's request counts to the push of `system` that committed it."""
    runs = [r for r in results if r.system == system.name]
    for time_ns, requests in system.commits():
        for run in runs:
            if run.started_ns <= time_ns <= run.ended_ns:
                run.requests = requests


def _digest(path: Path) -> bytes:
    hasher = xxhash.xxh3_128()
    with path.open("rb") as handle:
        while piece := handle.read(8 << 20):
            hasher.update(piece)
    return hasher.digest()


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n / 1e6:.0f} MB"


def _progress_line(result: RunResult) -> str:
    status = "ok" if result.ok else f"FAILED: {result.error}"
    cpu = f"{result.cpu_s:.2f}" if result.cpu_s is not None else "-"
    return (f"  rep {result.rep + 1} {result.scenario:<11} {result.system:<13} "
            f"{result.wall_s:7.2f} s  server cpu {cpu} s  {status}")  # fmt: skip
