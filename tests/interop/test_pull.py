"""Differential pull tests: the same client command against real rsync and rsyncd-py.

The varied tree (tests.helpers.trees) is put on each server as ``src`` -- copied into
real rsync's home and into ``--root``'s directory, pushed with plain ``-a`` into the
store -- and the client pulls ``lh:src/`` into a local directory with one command line.
The oracle is real ``rsync --server --sender``; rsyncd-py (``ours``: ``--root`` and
``--store``) must give the same exit code, itemize lines, ``-v`` listing, ``--stats``
figures and pulled tree. "changed" cases give the client the original tree first and
then change the served one (`mutate_source`), so updates, deletions, checksums,
dry runs and deltas have something to do. A case rsyncd-py cannot pass yet carries a
strict xfail naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent
from tests.helpers.trees import assert_same_tree, snapshot
from tests.interop.conftest import mutate_source

# without -H the pulled copies of a hard-linked pair are separate files
NOT_LINKED = {"ignore": {"links"}}


@dataclass(frozen=True)
class PullCase:
    """One client command line (without source and destination)."""

    id: str
    args: tuple[str, ...]
    changed: bool = False  # the client holds the original tree, the server a changed one
    compare: dict[str, object] = field(default_factory=dict)
    gaps: dict[str, str] = field(default_factory=dict)  # target name -> strict xfail reason


DELTA_STATS = (
    "Number of files",
    "Number of created files",
    "Number of deleted files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
    "Literal data",
)

CASES = [
    PullCase("a", ("-a",)),
    PullCase("av", ("-av",)),
    PullCase("ai", ("-ai",)),
    PullCase("a-stats", ("-a", "--stats")),
    PullCase("update-ai", ("-ai", "--stats"), changed=True),
    PullCase("delete", ("-ai", "--delete", "--stats"), changed=True),
    PullCase("delete-after", ("-ai", "--delete-after"), changed=True),
    PullCase("dry-run", ("-a", "--dry-run", "-i", "--delete", "--stats"), changed=True),
    PullCase("checksum", ("-ai", "-c", "--stats"), changed=True),
    PullCase("ignore-times", ("-ai", "-I", "--stats"), changed=True),
    PullCase("size-only", ("-ai", "--size-only", "--stats"), changed=True),
    PullCase("whole-file", ("-aiW", "--stats"), changed=True),
    PullCase("inplace", ("-ai", "--inplace", "--stats"), changed=True),
    PullCase("existing", ("-ai", "--existing"), changed=True),
    PullCase("update", ("-aiu",), changed=True),
    PullCase(
        "backup",
        ("-ai", "--backup", "--suffix=.bak"),
        changed=True,
        compare={"dir_times": False},  # -b without --backup-dir implies -O (options.c)
    ),
    PullCase("append", ("-ai", "--append", "--stats"), changed=True),
    PullCase("append-verify", ("-ai", "--append-verify", "--stats"), changed=True),
    PullCase("compress", ("-aiz", "--stats"), changed=True),
    *(
        PullCase(f"compress-{name}", ("-ai", f"--zc={name}", "--stats"), changed=True)
        for name in ("zstd", "lz4", "zlibx", "zlib")
    ),
    *(
        PullCase(f"cc-{name}", ("-ai", f"--cc={name}", "--stats"), changed=True)
        for name in ("md4", "md5", "xxh64", "xxh3", "xxh128")
    ),
    PullCase("numeric-ids", ("-ai", "--numeric-ids")),
    PullCase("hard-links", ("-aiH",), compare={"ignore": ()}),
    PullCase("no-inc-recursive", ("-ai", "--no-inc-recursive")),
    *(
        PullCase(f"protocol-{n}", ("-ai", f"--protocol={n}", "--stats"), changed=True)
        for n in (31, 30, 29, 28, 27)
    ),
    PullCase("exclude", ("-ai", "--exclude=size-*", "--exclude=/deep/", "--exclude=*.x")),
    PullCase("include-exclude", ("-ai", "--include=*/", "--include=size-7*", "--exclude=*")),
    PullCase(
        "delete-excluded",
        ("-ai", "--delete", "--exclude=size-7*", "--delete-excluded"),
        changed=True,
    ),
    PullCase("chmod", ("-ai", "--chmod=F600,D700")),
    PullCase("omit-dir-times", ("-aiO",), compare={"dir_times": False}),
    PullCase("no-perms-no-times", ("-rli",), compare={"ignore": {"mtime_ns", "links"}}),
    PullCase("dirs-only", ("-dlpti",)),
    PullCase("sparse", ("-aiS",)),
    PullCase("xattrs", ("-aiX",)),
    PullCase("acls", ("-aiA",)),
]


# -- scenario helpers ----------------------------------------------------------------


def serve_tree(h: RsyncHarness, target: Target, src: Path) -> None:
    """Put `src` on `target` as ``src`` (what an earlier backup left there)."""
    if target.name == "store":  # -H: the store keeps the hard-link groups, as cp -a does
        result = h.run(target, ["-aH", f"{src}/", "lh:src/"], tree=None)
        assert result.returncode == 0, result.describe()
        return
    dest = target.home / "src"
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


@dataclass(frozen=True)
class Templates:
    """The served trees every test starts from, made once per worker.

    `original` is the varied tree, `changed` the same after `mutate_source`; the
    `stores` are local-directory store homes (bucket + state) holding each as ``src``,
    pushed once by rsyncd-py, so a test copies a store instead of pushing again.
    """

    original: Path
    changed: Path
    stores: dict[str, Path]


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory, _varied_tree_template: Path) -> Templates:
    base = tmp_path_factory.mktemp("pull-templates")
    changed = base / "changed"
    subprocess.run(["cp", "-a", str(_varied_tree_template), str(changed)], check=True)
    mutate_source(changed)
    stores = {}
    for name, tree in (("original", _varied_tree_template), ("changed", changed)):
        (base / f"store-{name}").mkdir()
        h = RsyncHarness(base / f"store-{name}")
        store = h.rsyncd_store()
        serve_tree(h, store, tree)
        stores[name] = store.home
    return Templates(_varied_tree_template, changed, stores)


def serve(h: RsyncHarness, target: Target, templates: Templates, which: str = "original") -> None:
    """Put a template tree on `target` as ``src`` (a store gets a copy of its template)."""
    if target.name != "store":
        serve_tree(h, target, getattr(templates, which))
        return
    for part in ("bucket", "state"):  # the store and its local cache (if it made one)
        shutil.rmtree(target.home / part, ignore_errors=True)
        if (templates.stores[which] / part).exists():
            subprocess.run(
                ["cp", "-a", str(templates.stores[which] / part), str(target.home / part)],
                check=True,
            )


def pull(
    h: RsyncHarness, target: Target, args: list[str], dest: str, *, keep_root_time: bool = True
) -> RsyncResult:
    """Run one pull into the client directory `dest`; the result carries the local tree.

    rsyncd-py declines incremental recursion (compat.c lets a server), so the client
    says "receiving file list ... done" where it says "receiving incremental file list"
    to real rsync: that session line is left out of the listing. Without
    `keep_root_time` the time of `dest` itself is dropped (the client made it "now").
    """
    result = h.run(target, args, tree=None)
    local = h.client_dir / dest
    tree = snapshot(local) if result.returncode in (0, 23, 24) and local.exists() else None
    if tree is not None and not keep_root_time:
        tree[b"."] = replace(tree[b"."], mtime_ns=0)
    listing = [line for line in result.listing if line not in _FILE_LIST_LINES]
    return replace(result, tree=tree, listing=listing)


_FILE_LIST_LINES = (b"receiving incremental file list", b"receiving file list ... done")


def pull_each(
    h: RsyncHarness,
    targets: list[Target],
    args: list[str],
    *,
    old_copy: Path | None = None,
    keep_root_time: bool = True,
) -> list[RsyncResult]:
    """Pull with the same command line (into ``pulled/``) from each target in turn.

    `old_copy` is what the client holds in ``pulled/`` before each pull. Each result is
    moved aside to ``pulled-<target>`` so the printed names stay identical.
    """
    results = []
    for target in targets:
        local = h.client_dir / "pulled"
        if old_copy is not None:
            subprocess.run(["cp", "-a", str(old_copy), str(local)], check=True)
        results.append(pull(h, target, [*args, "pulled/"], "pulled", keep_root_time=keep_root_time))
        if local.exists():
            local.rename(h.client_dir / f"pulled-{target.name}")
    return results


# -- the differential cases ----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_pull(
    case: PullCase,
    ours: Target,
    rsync_harness: RsyncHarness,
    templates: Templates,
    request: pytest.FixtureRequest,
) -> None:
    if reason := case.gaps.get(ours.name):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    h = rsync_harness
    oracle = h.oracle()
    targets = [oracle, ours]
    old_copy = templates.original if case.changed else None
    for target in targets:
        serve(h, target, templates, "changed" if case.changed else "original")
    o, r = pull_each(h, targets, [*case.args, "lh:src/"], old_copy=old_copy)
    compare = {**NOT_LINKED, **case.compare}
    if case.changed:
        compare.update(literal_slack=2.0, stats=DELTA_STATS)
    assert_equivalent(o, r, **compare)  # type: ignore[arg-type]


def test_pull_reproduces_the_source_tree(
    ours: Target, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """Push then pull, real rsync both ways: content, types, modes, ns mtimes, owners."""
    h = rsync_harness
    serve_tree(h, ours, varied_tree)  # pushed by this test: the round trip is the point
    result = pull(h, ours, ["-a", "lh:src/", "back/"], "back")
    assert result.returncode == 0, result.describe()
    assert result.tree is not None
    assert_same_tree(snapshot(varied_tree), result.tree, **NOT_LINKED)  # type: ignore[arg-type]


def test_pull_numeric_ids_keeps_numbers(
    ours: Target, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    h = rsync_harness
    serve_tree(h, ours, varied_tree)
    result = pull(h, ours, ["-a", "--numeric-ids", "lh:src/", "back/"], "back")
    assert result.returncode == 0, result.describe()
    assert result.tree is not None
    assert_same_tree(snapshot(varied_tree), result.tree, **NOT_LINKED)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "source",
    [
        "src",
        "src/dir",
        "src/dir/",
        "src/size-701",
        "src/./dir/sub",
        "src/names/*",
        "src/s*-70?",
        "src/zz*",  # matches nothing: passed on literally, as sh does
        "src/link-dangling/",  # a trailing slash follows a link only to a directory
        "src/size-1/",  # a file named as a directory
    ],
)
@pytest.mark.parametrize(
    "extra", [(), ("-R",), ("-s",)], ids=["plain", "relative", "secluded-args"]
)
def test_source_argument_forms(
    source: str,
    extra: tuple[str, ...],
    rsync_harness: RsyncHarness,
    templates: Templates,
) -> None:
    """Top dirs, implied dirs, -R, single files and server-side globbing name alike.

    Naming does not depend on the file system, so this runs against ``--root`` only.
    """
    h = rsync_harness
    oracle, ours = h.oracle(), h.rsyncd_root()
    for target in (oracle, ours):
        serve(h, target, templates)
    o, r = pull_each(h, [oracle, ours], ["-ai", *extra, f"lh:{source}"], keep_root_time=False)
    assert_equivalent(o, r, **NOT_LINKED)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "extra", [(), ("--ignore-missing-args",), ("--delete-missing-args", "-i")], ids=str
)
def test_missing_source(
    extra: tuple[str, ...], ours: Target, rsync_harness: RsyncHarness, templates: Templates
) -> None:
    """A missing source: exit 23 with rsync's message, ignored, or deleted on the client."""
    h = rsync_harness
    oracle = h.oracle()
    for target in (oracle, ours):
        serve(h, target, templates)
    (h.tmp / "old").mkdir()
    (h.tmp / "old" / "nope").write_bytes(b"the client has it, the server does not")
    o, r = pull_each(
        h,
        [oracle, ours],
        ["-a", *extra, "lh:src/nope", "lh:src/size-1"],
        old_copy=h.tmp / "old",
        keep_root_time=False,
    )
    assert_equivalent(o, r)
    if not extra:
        assert b'link_stat "' in r.stderr
        assert b'src/nope" failed: No such file or directory (2)' in r.stderr


def test_only_missing_source_ends_after_the_list(
    ours: Target, rsync_harness: RsyncHarness, templates: Templates
) -> None:
    h = rsync_harness
    oracle = h.oracle()
    for target in (oracle, ours):
        serve(h, target, templates)
    o, r = pull_each(h, [oracle, ours], ["-a", "lh:src/nope"])
    assert r.returncode == o.returncode == 23, r.describe()


def test_escaping_source_is_refused(ours: Target, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    result = pull(h, ours, ["-a", "lh:../../etc/", "out/"], "out")
    assert result.returncode == 23
    assert b'rsync: [sender] change_dir "../../etc" failed' in result.stderr
    assert not (h.client_dir / "out" / "passwd").exists()


def _delta_pull(h: RsyncHarness, ours: Target, size: int) -> None:
    """The client holds an old `size`-byte file, the server a 1% changed one."""
    from tests.helpers.trees import change_percent, write_file

    src = h.client_dir / "src"
    big = src / "big"
    write_file(big, os.urandom(size), 1_700_000_000_000_000_000)
    os.utime(src, ns=(1_700_000_000_000_000_000,) * 2)
    oracle = h.oracle()
    old_copy = h.tmp / "old"
    subprocess.run(["cp", "-a", str(src), str(old_copy)], check=True)
    change_percent(big, 1.0, seed=7)
    for target in (oracle, ours):
        serve_tree(h, target, src)
    o, r = pull_each(h, [oracle, ours], ["-ai", "--stats", "lh:src/"], old_copy=old_copy)
    assert o.stats["Matched data"] > 0
    assert r.stats["Matched data"] > 0
    assert_equivalent(
        o,
        r,
        literal_slack=2.0,
        stats=("Number of regular files transferred", "Total file size", "Literal data"),
    )
    assert r.tree is not None and r.tree[b"big"].digest == snapshot(src)[b"big"].digest


def test_delta_of_a_one_percent_change(ours: Target, rsync_harness: RsyncHarness) -> None:
    """8 MiB, 1% changed in scattered places: Literal data within 2x of real rsync's."""
    _delta_pull(rsync_harness, ours, 8 << 20)


@pytest.mark.soak
def test_delta_of_a_one_percent_change_256_mib(ours: Target, rsync_harness: RsyncHarness) -> None:
    _delta_pull(rsync_harness, ours, 256 << 20)


LISTINGS = [
    ("root", ("lh:src/",)),
    ("root", ("lh:src",)),
    ("root", ("-r", "lh:src/")),
    ("root", ("-l", "lh:src/")),
    ("root", ("lh:src/dir/",)),
    ("root", ("lh:src/*",)),
    ("root", ("-r", "--exclude=d*", "lh:src/")),
    ("root", ("-rR", "lh:src/./dir")),
    ("store", ("lh:src/",)),
    ("store", ("-rl", "lh:src/")),
]


@pytest.mark.parametrize(
    ("target", "args"), LISTINGS, ids=[f"{t}-{' '.join(a)}" for t, a in LISTINGS]
)
def test_list_only_output_is_identical(
    target: str, args: tuple[str, ...], rsync_harness: RsyncHarness, templates: Templates
) -> None:
    """``rsync host:path`` (no destination) prints exactly what it prints for real rsync."""
    h = rsync_harness
    oracle = h.oracle()
    ours = h.rsyncd_root() if target == "root" else h.rsyncd_store()
    results = []
    for target in (oracle, ours):
        serve(h, target, templates)
        results.append(h.run(target, list(args), tree=None))
    o, r = results
    assert (r.returncode, r.stdout) == (o.returncode, o.stdout), (
        f"\n--- oracle ---\n{o.describe(200)}\n--- ours ---\n{r.describe(200)}"
    )
    assert o.returncode == 0 and o.stdout.endswith(b"\n")


@pytest.mark.parametrize("option", ["-L", "-k", "--copy-unsafe-links"])
def test_symlink_following_is_refused(
    option: str, ours: Target, rsync_harness: RsyncHarness, templates: Templates
) -> None:
    """Referents may lie outside the served tree: refused with rsync's text, exit 1."""
    h = rsync_harness
    serve(h, ours, templates)
    result = pull(h, ours, ["-a", option, "lh:src/", "out/"], "out")
    assert result.returncode == 1, result.describe()
    assert b"The server does not support --copy-" in result.stderr


def test_per_directory_filter_files_on_the_sender(
    ours: Target, rsync_harness: RsyncHarness
) -> None:
    """-F: the sender reads .rsync-filter files in its own tree (merged per directory)."""
    from tests.helpers.trees import write_file

    h = rsync_harness
    src = h.client_dir / "src"
    when = 1_600_000_000_000_000_000
    for rel in ("keep.txt", "drop.log", "sub/keep.log", "sub/drop.txt", "sub/deep/x.txt"):
        write_file(src / rel, rel.encode(), when)
    write_file(src / ".rsync-filter", b"- *.log\n", when)
    write_file(src / "sub" / ".rsync-filter", b"+ keep.log\n- *.txt\n", when)
    for rel in ("sub/deep", "sub", "."):
        os.utime(src / rel, ns=(when, when))
    oracle = h.oracle()
    for target in (oracle, ours):
        serve_tree(h, target, src)
    o, r = pull_each(h, [oracle, ours], ["-ai", "-F", "lh:src/"])
    assert_equivalent(o, r)
    assert r.tree is not None and b"sub/keep.log" in r.tree and b"sub/drop.txt" not in r.tree
