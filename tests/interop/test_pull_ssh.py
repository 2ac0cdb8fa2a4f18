"""Push then pull over real SSH: stock rsync and OpenSSH against ``rsyncd-py serve``.

The server runs on its default data-dir store. The varied tree (files of every block
boundary size, symlinks, a fifo, a device node and foreign owners as root, odd names,
ns and pre-1970 mtimes) is pushed with ``rsync -a`` and pulled back with ``rsync -a``,
by owner name and with ``--numeric-ids``; the pulled tree must equal the source in
content, types, modes, mtimes to the nanosecond, symlink targets, devices, owners and
groups. A delta pull over SSH restores a changed local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.trees import assert_same_tree, change_percent, snapshot, write_file

NOT_LINKED = {"ignore": {"links"}}


@pytest.fixture
def served(rsyncd_serve_factory: object) -> object:
    return rsyncd_serve_factory(root=None)  # type: ignore[operator]


@pytest.mark.parametrize("numeric", [(), ("--numeric-ids",)], ids=["by-name", "numeric-ids"])
def test_push_then_pull_over_ssh(
    numeric: tuple[str, ...], served: object, varied_tree: Path, tmp_path: Path
) -> None:
    server = served
    push = server.rsync("-a", *numeric, f"{varied_tree}/", server.dest("web1/"))  # type: ignore[attr-defined]
    assert push.returncode == 0, push.stderr
    back = tmp_path / "back"
    pull = server.rsync("-a", *numeric, server.dest("/web1/"), f"{back}/")  # type: ignore[attr-defined]
    assert pull.returncode == 0, pull.stderr
    assert_same_tree(snapshot(varied_tree), snapshot(back), **NOT_LINKED)  # type: ignore[arg-type]


def test_delta_pull_over_ssh(served: object, tmp_path: Path) -> None:
    server = served
    src = tmp_path / "src"
    write_file(src / "big", os.urandom(4 << 20), 1_700_000_000_000_000_000)
    old = tmp_path / "old"
    old.mkdir()
    (old / "big").write_bytes((src / "big").read_bytes())
    change_percent(src / "big", 1.0, seed=3)
    push = server.rsync("-a", f"{src}/", server.dest("data/"))  # type: ignore[attr-defined]
    assert push.returncode == 0, push.stderr
    pull = server.rsync("-a", "--stats", server.dest("data/"), f"{old}/")  # type: ignore[attr-defined]
    assert pull.returncode == 0, pull.stderr
    assert (old / "big").read_bytes() == (src / "big").read_bytes()
    assert b"Matched data: 0 bytes" not in pull.stdout
