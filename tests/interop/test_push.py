"""Differential push tests: the same client command against real rsync and rsyncd-py.

Each case pushes the varied tree (tests.helpers.trees) with one client command line to
real ``rsync --server`` (the oracle) and to rsyncd-py (``ours``: ``--root`` and
``--store``), then requires the same exit code, itemize lines, ``-v`` listing,
``--stats`` figures and resulting tree (content, type, mode, ns mtime, symlink target,
owner, hard links). "changed" cases first push the tree with plain ``-a`` and then
change the source (see `mutate_source`), so updates, deletions, checksums and dry runs
have something to do. A case rsyncd-py cannot pass yet carries a strict xfail naming
what is missing, so it fails loudly the day it starts passing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.helpers.moto_server import MotoS3
from tests.helpers.rsync_harness import RsyncHarness, Target, assert_equivalent
from tests.helpers.trees import add_xattrs, build_varied_tree, snapshot
from tests.interop.conftest import TARGETS, make_target, mutate_source, seed_destination


@dataclass(frozen=True)
class Case:
    """One client command line (without source and destination)."""

    id: str
    args: tuple[str, ...]
    changed: bool = False  # seed the destination, then change the source
    seeded: bool = False  # seed the destination, leave the source as it is
    compare: dict[str, object] = field(default_factory=dict)  # assert_equivalent options
    gaps: dict[str, str] = field(default_factory=dict)  # target name -> strict xfail reason
    store: bool = False  # also run against the store (the rest only exercises the protocol)
    dest: str = "dst"  # the remote destination directory
    files: dict[str, bytes] = field(default_factory=dict)  # extra client files (lists)


def both(reason: str) -> dict[str, str]:
    """The same gap for every rsyncd-py target."""
    return {"root": reason, "store": reason}


REFUSED = "the server refuses {} (option not supported yet)"

CASES = [
    Case("a", ("-a",)),
    Case("av", ("-av",)),
    Case("ai", ("-ai",)),
    Case("a-stats", ("-a", "--stats"), store=True),
    Case("update-ai", ("-ai", "--stats"), changed=True, store=True),
    Case("delete", ("-ai", "--delete", "--stats"), changed=True, store=True),
    Case("delete-before", ("-ai", "--delete-before"), changed=True, store=True),
    Case("delete-during", ("-ai", "--delete-during"), changed=True),
    Case("delete-after", ("-ai", "--delete-after"), changed=True, store=True),
    Case("delete-delay", ("-ai", "--delete-delay"), changed=True),
    Case("dry-run", ("-a", "--dry-run", "-i", "--delete", "--stats"), changed=True, store=True),
    Case("checksum", ("-ai", "-c", "--stats"), changed=True, store=True),
    Case("ignore-times", ("-ai", "-I", "--stats"), changed=True),
    Case("size-only", ("-ai", "--size-only", "--stats"), changed=True),
    Case("whole-file", ("-aiW", "--stats"), changed=True),
    Case("inplace", ("-ai", "--inplace", "--stats"), changed=True, store=True),
    Case("existing", ("-ai", "--existing"), changed=True),
    Case("ignore-existing", ("-ai", "--ignore-existing"), changed=True),
    Case("update", ("-aiu",), changed=True),
    Case(
        "backup",
        ("-ai", "--backup", "--suffix=.bak"),
        changed=True,
        compare={"dir_times": False},  # -b without --backup-dir implies -O (options.c)
    ),
    Case("max-delete", ("-ai", "--delete", "--max-delete=1"), changed=True),
    Case("compress", ("-aiz", "--stats")),
    Case("compress-zstd", ("-ai", "--zc=zstd", "--stats"), changed=True, store=True),
    Case("compress-lz4", ("-ai", "--zc=lz4", "--stats"), changed=True),
    Case("compress-zlibx", ("-ai", "--zc=zlibx", "--stats"), changed=True),
    Case("compress-zlib", ("-ai", "--zc=zlib", "--stats"), changed=True),
    *(
        Case(f"cc-{name}", ("-ai", f"--cc={name}", "--stats"), changed=True)
        for name in ("md4", "md5", "xxh64", "xxh3", "xxh128")
    ),
    Case("numeric-ids", ("-ai", "--numeric-ids"), store=True),
    Case("hard-links", ("-aiH",), store=True),
    Case("no-inc-recursive", ("-ai", "--no-inc-recursive"), store=True),
    *(
        Case(
            f"protocol-{n}",
            ("-ai", f"--protocol={n}", "--stats"),
            changed=True,
            store=n == 29,
        )
        for n in (31, 30, 29, 28, 27)
    ),
    Case("exclude", ("-ai", "--exclude=size-*", "--exclude=/deep/")),
    Case(
        "delete-excluded",
        ("-ai", "--delete", "--exclude=size-7*", "--delete-excluded"),
        changed=True,
    ),
    Case("filter-protect", ("-ai", "--delete", "--filter=P size-*"), changed=True),
    Case("chmod", ("-ai", "--chmod=F600,D700")),
    Case("omit-dir-times", ("-aiO",), compare={"dir_times": False}),
    Case("no-perms-no-times", ("-rli",), compare={"ignore": {"mtime_ns"}}, store=True),
    Case("xattrs", ("-aiX",), store=True),
    Case("sparse", ("-aiS",), compare={"holes": True}, store=True),
    Case("acls", ("-aiA",), store=True),
    Case("partial", ("-ai", "--partial"), changed=True),
    Case("partial-dir", ("-ai", "--partial-dir=.rsync-partial"), changed=True),
    Case("delay-updates", ("-ai", "--delay-updates"), changed=True),
    Case("append", ("-ai", "--append", "--stats"), changed=True, store=True),
    Case("append-verify", ("-ai", "--append-verify", "--stats"), changed=True, store=True),
    *(
        Case(kind, ("-ai", f"--{kind}=../dst"), seeded=True, dest="dst2", store=True)
        for kind in ("link-dest", "compare-dest", "copy-dest")
    ),
    Case("fuzzy", ("-aiy", "--stats"), changed=True, store=True),
    Case("fuzzy-protocol-28", ("-aiy", "--protocol=28")),  # both ends refuse it: code 2
    Case("fuzzy-yy", ("-aiyy", "--stats"), changed=True),
    Case("fuzzy-dry-run", ("-aiyn", "--stats"), changed=True),
    *(
        Case(f"fuzzy-{kind}", ("-aiy", f"--{kind}", "--stats"), changed=True)
        for kind in ("delete-during", "delete-delay")
    ),
    Case("temp-dir", ("-ai", "--temp-dir=/tmp"), changed=True),
    Case("prune-empty-dirs", ("-aim",)),
    Case("relative", ("-aiR",), compare={"root_time": False}),
    Case("keep-dirlinks", ("-aiK",), changed=True),
    Case("force-delete", ("-ai", "--delete", "--force"), changed=True),
    Case("ignore-errors", ("-ai", "--delete", "--ignore-errors"), changed=True),
    Case("chown", ("-ai", "--chown=1:1"), store=True),
    Case("usermap", ("-ai", "--usermap=1234:4321", "--groupmap=*:5"), store=True),
    Case("fake-super", ("-ai", "--fake-super")),
    Case("preallocate", ("-ai", "--preallocate")),
    Case("min-max-size", ("-ai", "--min-size=1", "--max-size=5000")),
    Case("modify-window", ("-ai", "--modify-window=2"), changed=True),
    Case(
        "files-from",
        ("-ai", "--files-from=list"),
        files={"list": b"size-700\ndir/sub/nested\nnames/with space\nempty\n"},
        compare={"root_time": False},  # "." is not transferred: its time is arbitrary
    ),
    Case("block-size", ("-ai", "-B", "2048", "--stats"), changed=True),
    Case("itemize-twice", ("-aii",), changed=True),
    Case("verbose-2", ("-avv",), changed=True),
    Case("checksum-seed", ("-ai", "--checksum-seed=7", "--stats"), changed=True),
    Case("one-file-system", ("-aix",)),
    Case("copy-links", ("-aiL",)),
    Case("safe-links", ("-ai", "--safe-links")),
    Case("secluded-args", ("-ais", "--stats"), changed=True),
    Case("old-args", ("-ai", "--old-args")),
    Case("progress", ("-a", "--progress", "--stats"), changed=True),
    Case("out-format", ("-a", "--out-format=%i %n%L %l"), changed=True),
    Case("quiet", ("-aq", "--delete"), changed=True),
    Case("timeout", ("-ai", "--timeout=60", "--contimeout=60")),
    Case("bwlimit", ("-ai", "--bwlimit=100m")),
    Case("no-owner-no-group", ("-ai", "--no-o", "--no-g")),
    Case("no-specials", ("-ai", "--no-specials")),
    Case("copy-unsafe-links", ("-ai", "--copy-unsafe-links")),
    Case("super", ("-ai", "--super")),
    Case("fsync", ("-ai", "--fsync")),
    Case("open-noatime", ("-ai", "--open-noatime")),
    Case("msgs2stderr", ("-ai", "--msgs2stderr", "--delete"), changed=True),
    Case("no-msgs2stderr", ("-ai", "--no-msgs2stderr", "--delete"), changed=True),
    # "X is uptodate" only when the client sends no --log-format=%i, or below protocol 29
    Case("info-debug", ("-ai", "--info=name2,del2", "--debug=none"), changed=True),
    Case("info-name2-protocol-28", ("-ai", "--info=name2", "--protocol=28"), changed=True),
    Case("verbose-protocol-28", ("-av", "--protocol=28")),  # dirs, links, devices named
    Case("info-name2-out-format", ("-a", "--info=name2", "--out-format=%n"), changed=True),
    Case("iconv", ("-ai", "--iconv=utf8,utf8"), gaps=both(REFUSED.format("--iconv"))),
    Case("max-alloc", ("-ai", "--max-alloc=1G")),
    Case("ignore-missing-args", ("-ai", "--ignore-missing-args")),
    Case("write-devices", ("-ai", "--write-devices")),
    Case("numeric-ids-changed", ("-ai", "--numeric-ids", "--stats"), changed=True),
]


def _params() -> Iterator[object]:
    for case in CASES:
        for target in TARGETS if case.store else ("root",):
            marks = []
            if reason := case.gaps.get(target):
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            yield pytest.param(case, target, id=f"{target}-{case.id}", marks=marks)


@pytest.mark.parametrize(("case", "target"), list(_params()))
def test_push(
    case: Case, target: str, rsync_harness: RsyncHarness, varied_tree: os.PathLike[str]
) -> None:
    h = rsync_harness
    ours = make_target(h, target)
    compare = dict(case.compare)
    if not ours.knows_allocation:
        compare.pop("holes", None)
    oracle = h.oracle()
    add_xattrs(h.client_dir / "src")  # every case shows whether xattrs travel (-X) or not
    for name, data in case.files.items():
        (h.client_dir / name).write_bytes(data)
    if case.changed or case.seeded:
        seed_destination(h, [oracle, ours])
    if case.changed:
        mutate_source(h.client_dir / "src")
    dest = case.dest
    results = h.differential([*case.args, "src/", f"lh:{dest}/"], [oracle, ours], tree=dest)
    assert_equivalent(*results, **compare)  # type: ignore[arg-type]


def test_second_identical_push_transfers_nothing(
    ours: Target, rsync_harness: RsyncHarness, varied_tree: os.PathLike[str]
) -> None:
    h = rsync_harness
    oracle = h.oracle()
    seed_destination(h, [oracle, ours])
    o, r = h.differential(["-ai", "--stats", "src/", "lh:dst/"], [oracle, ours])
    assert o.stats["Number of regular files transferred"] == 0
    assert_equivalent(o, r)


def test_single_file_to_a_new_name(
    ours: Target, rsync_harness: RsyncHarness, varied_tree: os.PathLike[str]
) -> None:
    h = rsync_harness
    o, r = h.differential(["-ai", "src/size-701", "lh:renamed"], [h.oracle(), ours], tree="renamed")
    assert_equivalent(o, r)


@pytest.mark.parametrize("args", [(), ("--mkpath",)], ids=["no-mkpath", "mkpath"])
def test_push_into_missing_directories(
    args: tuple[str, ...],
    ours: Target,
    rsync_harness: RsyncHarness,
    varied_tree: os.PathLike[str],
) -> None:
    h = rsync_harness
    o, r = h.differential(
        [*args, "-ai", "src/", "lh:missing/deeper/"], [h.oracle(), ours], tree="missing/deeper"
    )
    assert_equivalent(o, r)


def test_delta_of_a_one_percent_change(ours: Target, rsync_harness: RsyncHarness) -> None:
    from tests.helpers.trees import change_percent, write_file

    h = rsync_harness
    src = h.client_dir / "src"
    big = src / "big"
    write_file(big, os.urandom(8 << 20), 1_700_000_000_000_000_000)
    os.utime(src, ns=(1_700_000_000_000_000_000,) * 2)  # rsync#802: no directory time "now"
    oracle = h.oracle()
    seed_destination(h, [oracle, ours])
    change_percent(big, 1.0, seed=7)
    o, r = h.differential(["-ai", "--stats", "src/", "lh:dst/"], [oracle, ours])
    assert o.stats["Matched data"] > 0
    assert_equivalent(
        o,
        r,
        literal_slack=2.0,
        stats=("Number of regular files transferred", "Total file size", "Literal data"),
    )
    assert r.tree is not None and r.tree[b"big"].digest == snapshot(src)[b"big"].digest


def test_push_into_an_s3_store(
    rsync_harness: RsyncHarness, varied_tree: os.PathLike[str], moto_s3: MotoS3
) -> None:
    """The store on S3 (a moto server over HTTP): first push, then an update with --delete."""
    h = rsync_harness
    oracle, ours = h.oracle(), h.rsyncd_store(moto_s3.url(), env=moto_s3.env)
    assert_equivalent(*h.differential(["-ai", "--stats", "src/", "lh:dst/"], [oracle, ours]))
    mutate_source(h.client_dir / "src")
    update = ["-ai", "--delete", "--stats", "src/", "lh:dst/"]
    assert_equivalent(*h.differential(update, [oracle, ours]))


def test_push_of_the_full_varied_tree(ours: Target, rsync_harness: RsyncHarness) -> None:
    """The varied tree with its 5 MiB random file, new and then again unchanged."""
    h = rsync_harness
    build_varied_tree(h.client_dir / "src", seed=4, big=True)
    oracle = h.oracle()
    for _ in range(2):
        o, r = h.differential(["-ai", "--stats", "src/", "lh:dst/"], [oracle, ours])
        assert_equivalent(o, r)
    assert o.stats["Number of regular files transferred"] == 0
