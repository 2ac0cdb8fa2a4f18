"""pytest plugin: drive the real rsync client against real rsync and rsyncd-py, and compare.

gokrazy's rsynctest idea: the client runs ``rsync -e "python3 tools/fake_rsh.py"
--rsync-path=SERVER ARGS``; the fake remote shell drops the host name and runs SERVER
locally through ``sh -c``, exactly as sshd would. A `Target` names one server:

- ``oracle``: real ``rsync --server``, started in its home directory (``cd HOME &&
  rsync``), so a relative remote path such as ``lh:dst/`` lands in HOME/dst;
- ``root``: ``rsyncd-py --root HOME``, where relative remote paths resolve inside HOME;
- ``store``: ``rsyncd-py --store URL`` on a fresh local-directory store (or an S3 store
  on the moto server), whose tree is read back through the store's own `FileSystem`.

`RsyncHarness.run(target, args)` runs one client command (``lh:`` marks the remote
side) and returns an `RsyncResult`: exit code, output, the sorted itemize lines, the
``--stats`` figures as a dict, the ``-v`` name listing, and the resulting remote tree
(read by the target's pluggable `TreeReader`). `RsyncHarness.differential(args)` runs
the same command against several targets; `assert_equivalent` compares two results.

Fixtures: ``rsync_harness`` (one per test, in ``tmp_path``) and ``varied_tree`` (the
tree of `tests.helpers.trees.build_varied_tree` without the 5 MiB file, built once per
worker and copied per test).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from rsyncd_py.fs.base import FileSystem
from tests.helpers.trees import Entry, Tree, assert_same_tree, build_varied_tree, snapshot

REPO = Path(__file__).resolve().parents[2]
FAKE_RSH = f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'tools' / 'fake_rsh.py'))}"
RSYNCD_PY = f"{shlex.quote(sys.executable)} -m rsyncd_py.cli.main"
RSYNC = shutil.which("rsync") or "rsync"
CLIENT_TIMEOUT = 120

TreeReader = Callable[["Target", str], Tree]

# the `--stats` figures that depend only on what was transferred (not on byte counts of
# the protocol itself, which legitimately differ with seeds and negotiated choices)
COMPARED_STATS = (
    "Number of files",
    "Number of created files",
    "Number of deleted files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
    "Matched data",
    "Literal data",
)
_ITEMIZE = re.compile(rb"^(?:[<>ch.*][fdLDS][-.+ ?a-zA-Z]{9}|\*deleting  ) ")
_STAT_LINE = re.compile(rb"^([A-Z][A-Za-z ]+): ([\d,]+)(?: bytes)?(?: \((.*)\))?$")
# lines of -v output that are about the session, not about files
_SUMMARY = re.compile(
    rb"^(?:$|sending incremental file list|building file list|sent [\d,]+ bytes|"
    rb"opening connection using|"
    rb"total size is |[A-Z][A-Za-z ]+: |delta-transmission |"
    rb" +[\d,]+ +\d+% )"  # --progress lines (their rates vary)
)


@dataclass
class Target:
    """One server an rsync client can reach (see the module docstring)."""

    name: str
    rsync_path: str
    home: Path
    read_tree: TreeReader
    env: dict[str, str] = field(default_factory=dict)
    knows_allocation: bool = True  # whether its trees show allocated blocks (holes)


@dataclass
class RsyncResult:
    """What one client run printed and left behind."""

    target: str
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    itemize: list[bytes]
    stats: dict[str, int]
    listing: list[bytes]
    tree: Tree | None

    def describe(self, max_lines: int = 30) -> str:
        """Summarise the run for an assertion message (long output is cut)."""
        out = self.stdout.decode(errors="replace").splitlines()
        if len(out) > max_lines:
            out = [*out[:max_lines], f"... ({len(out) - max_lines} more lines)"]
        return (
            f"[{self.target}] rsync {shlex.join(self.argv)} -> {self.returncode}\n"
            + "stdout:\n  "
            + "\n  ".join(out)
            + "\nstderr:\n  "
            + "\n  ".join(self.stderr.decode(errors="replace").splitlines())
        )


def _line_diff(name: str, want: list[bytes], got: list[bytes]) -> str:
    lines = difflib.unified_diff(
        [w.decode(errors="replace") for w in want],
        [g.decode(errors="replace") for g in got],
        "oracle",
        "ours",
        lineterm="",
        n=1,
    )
    return f"{name} differ:\n  " + "\n  ".join(list(lines)[:60])


def parse_itemize(stdout: bytes) -> list[bytes]:
    """Return the sorted itemize lines (``-i``, ``--dry-run -i``, ``*deleting``)."""
    return sorted(line for line in stdout.splitlines() if _ITEMIZE.match(line))


def parse_stats(stdout: bytes) -> dict[str, int]:
    """Return the integer ``--stats`` figures, plus ``"Name: part"`` for breakdowns."""
    stats: dict[str, int] = {}
    for line in stdout.splitlines():
        match = _STAT_LINE.match(line)
        if match is None:
            continue
        name = match.group(1).decode()
        stats[name] = int(match.group(2).replace(b",", b""))
        for part in (match.group(3) or b"").split(b", "):
            key, _, value = part.partition(b": ")
            if value:
                stats[f"{name}: {key.decode()}"] = int(value.replace(b",", b""))
    return stats


def parse_listing(stdout: bytes) -> list[bytes]:
    """Return the sorted per-file lines of ``-v`` output (session lines removed)."""
    return sorted(
        line
        for line in stdout.splitlines()
        if not _SUMMARY.match(line) and not _ITEMIZE.match(line)
    )


# -- tree readers --------------------------------------------------------------------


def local_tree(target: Target, remote_path: str) -> Tree:
    """Read the tree straight from the target's directory."""
    return snapshot(target.home / remote_path)


async def filesystem_tree(fs: FileSystem, top: bytes) -> Tree:
    """Read a tree through the `FileSystem` interface (any implementation)."""
    tree: Tree = {}
    groups: dict[object, list[bytes]] = {}

    async def visit(path: bytes, rel: bytes) -> None:
        st = await fs.lstat(path)
        assert st is not None, path
        kind = {
            stat.S_IFREG: "file",
            stat.S_IFDIR: "dir",
            stat.S_IFLNK: "symlink",
            stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket",
            stat.S_IFCHR: "chr",
            stat.S_IFBLK: "blk",
        }[st.kind]
        digest = ""
        if kind == "file":
            reader = await fs.open_read(path)
            h = hashlib.sha256()
            async for chunk in reader.stream():
                h.update(chunk)
            await reader.close()
            digest = h.hexdigest()
        tree[rel] = Entry(
            kind=kind,
            perms=stat.S_IMODE(st.mode),
            size=st.size,
            digest=digest,
            mtime_ns=st.mtime_ns,
            target=st.link_target,
            uid=st.uid,
            gid=st.gid,
            rdev=(os.major(st.rdev), os.minor(st.rdev)) if kind in ("chr", "blk") else None,
            xattrs=tuple(x for x in st.xattrs if not x[0].startswith(b"system.")),
        )
        if st.link_key is not None:
            groups.setdefault(st.link_key, []).append(rel)
        if kind == "dir":
            for name, _ in await fs.listdir(path):
                await visit(
                    path + b"/" + name if path else name, name if rel == b"." else rel + b"/" + name
                )

    await visit(top, b".")
    for paths in groups.values():
        for rel in paths:
            others = tuple(sorted(p for p in paths if p != rel))
            tree[rel] = replace(tree[rel], links=others)
    return tree


def store_tree(target: Target, remote_path: str) -> Tree:
    """Read the newest snapshot of the target's store in this process."""
    from rsyncd_py.fs.factory import StoreOptions
    from rsyncd_py.fs.store import StoreProvider

    async def read() -> Tree:
        provider = StoreProvider.open(
            StoreOptions(url=target.env["RSYNCD_PY_STORE"], cache_dir=str(target.home / "reader"))
        )
        try:
            fs = await provider.open_session(writable=False)
            try:
                return await filesystem_tree(fs, os.fsencode(remote_path.strip("/")))
            finally:
                await fs.close(True)
        finally:
            await provider.aclose()

    saved = {key: os.environ.get(key) for key in target.env}
    os.environ.update(target.env)
    try:
        return asyncio.run(read())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- running -------------------------------------------------------------------------


class RsyncHarness:
    """Targets and client runs inside one test's temporary directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.client_dir = tmp_path / "client"
        self.client_dir.mkdir(exist_ok=True)

    def _home(self, name: str) -> Path:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        return home

    def oracle(self) -> Target:
        """Real rsync as the server."""
        home = self._home("oracle")
        return Target("oracle", f"cd {shlex.quote(str(home))} && {RSYNC}", home, local_tree)

    def rsyncd_root(self, *, extra: str = "") -> Target:
        """rsyncd-py serving a plain directory (``--root``)."""
        home = self._home("root")
        path = f"{RSYNCD_PY} --root {shlex.quote(str(home))} {extra}".rstrip()
        return Target("root", path, home, local_tree)

    def rsyncd_store(self, url: str | None = None, env: dict[str, str] | None = None) -> Target:
        """rsyncd-py serving a fresh store (a local directory unless `url` is given)."""
        from blockstore.factory import create_store
        from blockstore.volume import VolumeParams

        home = self._home("store")
        url = url or str(home / "bucket")
        env = {**(env or {}), "RSYNCD_PY_STORE": url}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            create_store(url, volume=VolumeParams().to_config())
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        path = f"{RSYNCD_PY} --state-dir {shlex.quote(str(home / 'state'))}"
        return Target("store", path, home, store_tree, env, knows_allocation=False)

    def client_env(self, target: Target) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSYNC")}
        env.update(LC_ALL="C", **target.env)
        return env

    def command(self, target: Target, args: Sequence[str]) -> list[str]:
        """Return the full client argv for `args` against `target`."""
        return [RSYNC, "-e", FAKE_RSH, f"--rsync-path={target.rsync_path}", *args]

    def run(
        self,
        target: Target,
        args: Sequence[str],
        *,
        tree: str | None = "dst",
        timeout: float = CLIENT_TIMEOUT,
    ) -> RsyncResult:
        """Run the client once; read the remote tree at `tree` afterwards (None: don't)."""
        proc = subprocess.run(
            self.command(target, args),
            cwd=self.client_dir,
            env=self.client_env(target),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        remote_tree = None
        if tree is not None and proc.returncode in (0, 23, 24):
            remote_tree = target.read_tree(target, tree)
        return RsyncResult(
            target=target.name,
            argv=list(args),
            returncode=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            itemize=parse_itemize(proc.stdout),
            stats=parse_stats(proc.stdout),
            listing=parse_listing(proc.stdout),
            tree=remote_tree,
        )

    def differential(
        self, args: Sequence[str], targets: Sequence[Target], *, tree: str | None = "dst"
    ) -> list[RsyncResult]:
        """Run the same client command against each target, in order."""
        return [self.run(target, args, tree=tree) for target in targets]


def assert_equivalent(
    oracle: RsyncResult,
    ours: RsyncResult,
    *,
    stats: Sequence[str] = COMPARED_STATS,
    literal_slack: float = 1.0,
    **tree_options: object,
) -> None:
    """Fail unless `ours` behaved like `oracle`: exit code, itemize, listing, stats, tree.

    `literal_slack` lets "Literal data" be up to that factor of the oracle's (delta
    tests); other figures must be equal. `tree_options` go to `diff_trees`.
    """
    context = f"\n--- oracle ---\n{oracle.describe()}\n--- ours ---\n{ours.describe()}"
    assert ours.returncode == oracle.returncode, "exit codes differ" + context
    assert ours.itemize == oracle.itemize, _line_diff("itemize lines", oracle.itemize, ours.itemize)
    assert ours.listing == oracle.listing, _line_diff("-v listings", oracle.listing, ours.listing)
    for name in stats:
        want, got = oracle.stats.get(name), ours.stats.get(name)
        if name == "Literal data" and literal_slack != 1.0 and want is not None:
            assert got is not None and got <= want * literal_slack, (
                f"{name}: {got} > {literal_slack} x {want}" + context
            )
        else:
            assert got == want, f"{name}: {want} != {got}" + context
    if oracle.tree is not None or ours.tree is not None:
        assert oracle.tree is not None and ours.tree is not None, "a tree is missing" + context
        assert_same_tree(oracle.tree, ours.tree, **tree_options)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def rsync_harness(tmp_path: Path) -> RsyncHarness:
    """A harness rooted in this test's temporary directory."""
    return RsyncHarness(tmp_path)


@pytest.fixture(scope="session")
def _varied_tree_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_varied_tree(tmp_path_factory.mktemp("template") / "src", seed=2, big=False)


@pytest.fixture
def varied_tree(rsync_harness: RsyncHarness, _varied_tree_template: Path) -> Iterator[Path]:
    """A private copy of the varied tree (no 5 MiB file) at client/src."""
    src = rsync_harness.client_dir / "src"
    subprocess.run(["cp", "-a", str(_varied_tree_template), str(src)], check=True)
    yield src
