"""--link-dest, --compare-dest and --copy-dest against real rsync 3.2.7 (pushes).

The incremental-backup idiom: ``dst`` holds yesterday's backup (the varied tree), the
source has changed since (`mutate_source`), and today's push goes to ``dst2`` with the
old backup as its basis -- two basis directories, a missing one (warned about), and, on
the store, a snapshot (``/.snapshots/<id>/dst``). Each case must give real rsync's exit
code, itemize lines (-i, -ii, -vv), --stats figures and tree for ``dst2``; with
--link-dest the unchanged files must be hard links into the basis (one inode, or one
store link group), and the basis itself must stay as it was.

The basis is named by an absolute path (the oracle's real path; ``/dst`` inside
rsyncd-py's root): rsync 3.2.7 as a server cannot open a relative basis with ``..``
(``--link-dest=../dst``) for a delta -- such files fail verification twice, exit 23 --
while rsyncd-py can; `test_relative_basis_works_where_rsync_3_2_7_fails` shows both.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rsyncd_py.fs.local import LocalFileSystem
from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent
from tests.interop.conftest import TARGETS, make_target, mutate_source, seed_destination

STATS = (
    "Number of files",
    "Number of created files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
    "Literal data",
    "Matched data",
)
KINDS = ("--link-dest", "--compare-dest", "--copy-dest")


async def _link_keys(fs: object, paths: list[bytes]) -> dict[bytes, object]:
    keys = {}
    for path in paths:
        st = await fs.lstat(path)  # type: ignore[attr-defined]
        keys[path] = None if st is None else st.link_key
    await fs.close(True)  # type: ignore[attr-defined]
    return keys


def link_keys(target: Target, paths: list[bytes]) -> dict[bytes, object]:
    """Each path's hard-link identity on the target (None: not linked / missing)."""
    if target.name != "store":
        fs = LocalFileSystem(os.fsencode(target.home), read_only=True)
        return asyncio.run(_link_keys(fs, paths))
    from rsyncd_py.fs.factory import StoreOptions
    from rsyncd_py.fs.store import StoreProvider

    async def read() -> dict[bytes, object]:
        provider = StoreProvider.open(
            StoreOptions(url=target.env["RSYNCD_PY_STORE"], cache_dir=str(target.home / "lk"))
        )
        try:
            return await _link_keys(await provider.open_session(writable=False), paths)
        finally:
            await provider.aclose()

    return asyncio.run(read())


def _linked_pairs(target: Target, names: list[bytes]) -> list[bool]:
    """For each name: whether dst2/name is the same inode as dst/name."""
    keys = link_keys(target, [b"dst/" + n for n in names] + [b"dst2/" + n for n in names])
    return [
        keys[b"dst2/" + n] is not None and keys[b"dst2/" + n] == keys[b"dst/" + n] for n in names
    ]


CHECKED = [b"size-0", b"size-700", b"size-1048583", b"mode-755", b"size-1", b"size-701"]


def basis(target: Target, name: str) -> str:
    """`name` in the target's home as an absolute path the server understands."""
    return str(target.home / name) if target.name == "oracle" else f"/{name}"


def _differential(
    h: RsyncHarness,
    args: list[str],
    targets: list[Target],
    *,
    tree: str | None = "dst2",
    **compare: object,
) -> list[RsyncResult]:
    """Run the push against each target; "{basis}" in `args` becomes its ``dst``."""
    results = []
    for t in targets:
        resolved = [a.format(basis=basis(t, "dst")) for a in args]
        results.append(h.run(t, [*resolved, "src/", "lh:dst2/"], tree=tree))
    assert_equivalent(*results, stats=STATS, **compare)  # type: ignore[arg-type]
    return results


@pytest.mark.parametrize(
    "extra",
    [("-i", "--stats"), ("-ii", "--stats"), ("-vv",), ("-i", "-n", "--stats")],
    ids=["i", "ii", "vv", "dry-run"],
)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", TARGETS)
def test_backup_against_yesterday(
    kind: str,
    extra: tuple[str, ...],
    target: str,
    rsync_harness: RsyncHarness,
    varied_tree: Path,
) -> None:
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    seed_destination(h, [oracle, ours])
    mutate_source(varied_tree)
    before = [t.read_tree(t, "dst") for t in (oracle, ours)]
    tree = None if "-n" in extra else "dst2"
    _differential(h, ["-a", f"{kind}={{basis}}", *extra], [oracle, ours], tree=tree)
    assert [t.read_tree(t, "dst") for t in (oracle, ours)] == before  # the basis is intact
    if "-n" not in extra:
        linked = _linked_pairs(oracle, CHECKED)
        assert _linked_pairs(ours, CHECKED) == linked
        # unchanged files are links with --link-dest only; size-1/size-701 changed
        assert linked == [kind == "--link-dest"] * 4 + [False, False]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", TARGETS)
def test_two_basis_dirs_and_a_missing_one(
    kind: str, target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """The first exact match wins; a basis that does not exist is warned about."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    seed_destination(h, [oracle, ours])  # dst: yesterday
    for t in (oracle, ours):  # dst3: a half-updated copy of it, searched first
        result = h.run(t, ["-a", "--exclude=size-1*", "src/", "lh:dst3/"], tree=None)
        assert result.returncode == 0, result.describe()
    mutate_source(varied_tree)
    args = ["-ai", f"{kind}=../nowhere/", f"{kind}={{basis}}3", f"{kind}={{basis}}", "--stats"]
    o, r = _differential(h, args, [oracle, ours])
    assert b"arg does not exist: ../nowhere" in o.stderr
    assert b"arg does not exist: ../nowhere" in r.stderr


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", TARGETS)
def test_existing_destination_files(
    kind: str, target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """dst2 already holds some files: exact basis matches replace (or remove) them."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    seed_destination(h, [oracle, ours])
    for t in (oracle, ours):
        result = h.run(t, ["-a", "--exclude=size-7*", "src/", "lh:dst2/"], tree=None)
        assert result.returncode == 0, result.describe()
    mutate_source(varied_tree)
    _differential(h, ["-ai", "--stats", f"{kind}={{basis}}"], [oracle, ours])


@pytest.mark.parametrize("protocol", [31, 29, 28])
@pytest.mark.parametrize("target", TARGETS)
def test_link_dest_at_older_protocols(
    protocol: int, target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    seed_destination(h, [oracle, ours])
    mutate_source(varied_tree)
    args = ["-ai", "--stats", "--link-dest={basis}", f"--protocol={protocol}"]
    _differential(h, args, [oracle, ours])


def test_a_snapshot_as_the_basis(rsync_harness: RsyncHarness, varied_tree: Path) -> None:
    """The store's idiom: --link-dest=/.snapshots/<id>/dst (rsync: the same tree as ../dst)."""
    h = rsync_harness
    oracle, store = h.oracle(), h.rsyncd_store()
    seed_destination(h, [oracle, store])
    listing = h.run(store, ["lh:/.snapshots/"], tree=None)
    snapshot = [line.split()[-1] for line in listing.stdout.splitlines()][-1].decode()
    mutate_source(varied_tree)
    link_oracle = f"--link-dest={basis(oracle, 'dst')}"
    o = h.run(oracle, ["-ai", "--stats", link_oracle, "src/", "lh:dst2/"], tree="dst2")
    link = f"--link-dest=/.snapshots/{snapshot}/dst"
    r = h.run(store, ["-ai", "--stats", link, "src/", "lh:dst2/"], tree="dst2")
    assert_equivalent(o, r, stats=STATS)
    # a snapshot cannot join a link group: the files are copies sharing its content
    keys = link_keys(store, [b"dst2/size-700"])
    assert keys[b"dst2/size-700"] is None


@pytest.mark.parametrize("target", TARGETS)
def test_relative_basis_works_where_rsync_3_2_7_fails(
    target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """--link-dest=../dst: rsync 3.2.7 fails the changed files' deltas; we do not.

    rsyncd-py's result equals what rsync gives with the absolute path.
    """
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    seed_destination(h, [oracle, ours])
    mutate_source(varied_tree)
    broken = h.run(oracle, ["-ai", "--link-dest=../dst", "src/", "lh:bad/"], tree=None)
    assert broken.returncode == 23 and b"failed verification" in broken.stderr
    o = h.run(oracle, ["-ai", f"--link-dest={basis(oracle, 'dst')}", "src/", "lh:dst2/"])
    r = h.run(ours, ["-ai", "--link-dest=../dst", "src/", "lh:dst2/"])
    assert_equivalent(o, r)
