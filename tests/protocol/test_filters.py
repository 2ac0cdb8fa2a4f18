"""Filter rules against real rsync.

Sender side: a real client pulls a tree from a real `rsync --server --sender` through the
capture relay with a set of filter options. The rules on the wire (the first thing the
client sends) go into our FilterSet, and walking the same tree with
`FilterSet.excluded` (and per-directory merge files) must give exactly the names rsync
transferred.

Receiver side: a real client pushes with --delete and rules; the wire rules go into a
FilterSet, and `protected` must keep exactly what real rsync did not delete.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.filters import (
    FilterSet,
    option_rules,
    parse_rules,
    read_filter_list,
    server_filter_rules,
)
from tests.protocol.captures import RSYNC, demultiplex, run_captured

pytestmark = pytest.mark.skipif(RSYNC is None, reason="real rsync not installed")

TREE = {
    "a.txt": b"a",
    "b.o": b"b",
    "c.c": b"c",
    "core": b"core",
    "keep.log": b"log",
    "foo~": b"backup",
    "q1.md": b"q",
    "weird[1].txt": b"w",
    "name with space": b"s",
    ".git/config": b"g",
    "x/y.txt": b"y",
    "x/z.o": b"z",
    "x/.rsync-filter": b"- y.txt\n# a comment\n",
    "x/inner/y.txt": b"y2",
    "sub/deep/file.c": b"f",
    "sub/deep/file.o": b"o",
    "sub/deep/.rsync-filter": b"+ file.o\n- *.c\n",
    "sub/tmp/t1": b"t",
    "sub/tmp/.cvsignore": b"t1 t2\n",
    "empty/": b"",
}

PULL_RULES = [
    ["--exclude=*.o"],
    ["--exclude=/a.txt", "--exclude=tmp/", "--exclude=x/inner"],
    ["--include=*/", "--include=*.c", "--exclude=*"],
    ["-F"],
    ["-FF"],
    ["--filter=- **/deep/*.c", "--filter=+ sub/***", "--filter=- *"],
    ["-C"],
    ["--filter=- q?.md", "--filter=- weird\\[1\\].txt", "--filter=- [a-c].*"],
    ["--filter=-! */"],
    ["--filter=:e .rsync-filter"],
    ["--filter=:n- .rsync-filter", "--exclude=core"],
    ["--filter=H *.txt", "--filter=S keep.*", "--filter=- *.log"],
    ["--filter=- /sub/*/file.?", "--filter=- x/*/y.txt", "--filter=exclude name with space"],
    ["--exclude=*.txt", "--filter=!", "--exclude=*.c"],
    ["--filter=- ***/inner", "--filter=- empty/***"],
]


def make_tree(root: Path, tree: dict[str, bytes]) -> None:
    for name, content in tree.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def wire_rules(c2s: bytes, protocol: int = 32) -> list[bytes]:
    """The filter list: the first data after setup (raw after the version below 30)."""
    buf = ReceiveBuffer(demultiplex(c2s) if protocol >= 30 else c2s[4:])
    rules = read_filter_list(buf, protocol)
    assert rules is not None
    return rules


def reader_for(root: Path):
    def read(rel: bytes) -> bytes | None:
        path = root / os.fsdecode(rel)
        return path.read_bytes() if path.is_file() else None

    return read


def sender_walk(root: Path, filters: FilterSet) -> set[str]:
    """What a sender with `filters` lists: rsync's send_directory recursion."""
    listed = {"./"}
    read = reader_for(root)

    def walk(rel: bytes) -> None:
        filters.enter_dir(rel, read)
        directory = root / os.fsdecode(rel) if rel else root
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            name = os.fsencode(entry.name)
            path = rel + b"/" + name if rel else name
            is_dir = entry.is_dir(follow_symlinks=False)
            if filters.excluded(path, is_dir):
                continue
            listed.add(os.fsdecode(path) + ("/" if is_dir else ""))
            if is_dir:
                walk(path)
        filters.leave_dir(rel)

    walk(b"")
    return listed


OLD_PROTOCOL_PULLS = [(o, p) for o in PULL_RULES[:3] + PULL_RULES[6:8] for p in (28, 29)]


@pytest.mark.parametrize(
    ("options", "protocol"),
    [(o, 32) for o in PULL_RULES] + OLD_PROTOCOL_PULLS,
    ids=[f"{' '.join(o)} @{p}" for o, p in [(o, 32) for o in PULL_RULES] + OLD_PROTOCOL_PULLS],
)
def test_sender_excludes_what_real_rsync_excludes(
    tmp_path: Path, options: list[str], protocol: int
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, TREE)
    out, c2s = run_captured(
        ["-r", "--dry-run", "--out-format=%n", f"--protocol={protocol}", *options,
         f"lh:{src}/", f"{dst}/"],
        tmp_path / "caps",
    )
    transferred = set(out.splitlines())
    rules = wire_rules(c2s, protocol)
    cvs = "-C" in options
    filters = FilterSet(
        server_filter_rules(rules, protocol, am_sender=True, cvs_exclude=cvs), protocol=protocol
    )
    listed = sender_walk(src, filters)
    if protocol < 29:  # protocol 28 does not itemize directories in a dry run
        listed = {name for name in listed if not name.endswith("/")}
        transferred = {name for name in transferred if not name.endswith("/")}
    assert listed == transferred


PUSH_SRC = {
    ".rsync-filter": b"P *.bak\n",
    "a.txt": b"a",
    "x/y.txt": b"y",
    "x/keep/k.txt": b"k",
    "sub/s.txt": b"s",
}
PUSH_DST_EXTRA = {
    ".rsync-filter": b"P *.bak\n",
    "x/.rsync-filter": b"- old.*\n",
    ".keep": b"note.txt\n",
    "gone/.keep": b"*\n",
    "old.bak": b"1",
    "old.o": b"2",
    "note.txt": b"3",
    "x/old.o": b"4",
    "x/old.txt": b"5",
    "x/keep/stale.o": b"6",
    "sub/stale.tmp": b"7",
    "gone/g1": b"8",
    "gone/g2.o": b"9",
}
PUSH_RULES = [
    ["--delete", "--exclude=*.bak"],
    ["--delete", "--filter=P *.o"],
    ["--delete", "--filter=P *.o", "--delete-excluded", "--exclude=*.bak"],
    ["--delete", "--filter=protect /x/", "--filter=risk x/old.o"],
    ["--delete", "--filter=- *.o", "--filter=+ x/**"],
    ["--delete", "--filter=-r *.tmp", "--filter=-s *.txt"],
    ["--delete", "--filter=P! *.txt"],
    ["--delete", "-C"],
    ["--delete", "--filter=-p *.o", "--filter=- gone/g1"],
    ["--delete", "-F"],
    ["--delete", "--filter=:- .keep"],
]


def deletions(out: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^deleting (.*)$", out, re.MULTILINE)}


def filter_args(options: list[str]) -> list[tuple[str, str]]:
    """The (kind, rule) pairs ServerOptions.filter_args would hold for these options."""
    pairs = []
    for option in options:
        kind, _, text = option[2:].partition("=")
        if kind in ("filter", "exclude", "include"):
            pairs.append((kind, text))
    return pairs


def receiver_deletions(src: Path, dst: Path, sent: FilterSet, filters: FilterSet) -> set[str]:
    """What a deleting receiver removes: generator.c delete_in_dir over each sent dir.

    `sent` is the client's own view (what it puts in the file list); `filters` the
    receiver's, built from the rules on the wire.
    """
    deleted: set[str] = set()
    read_src, read_dst = reader_for(src), reader_for(dst)

    def delete_contents(rel: str) -> bool:
        """delete_dir_contents with ignore_perishable; True if the dir became empty."""
        empty = True
        filters.enter_dir(rel.encode(), read_dst)
        for entry in os.scandir(dst / rel):
            path = f"{rel}/{entry.name}"
            is_dir = entry.is_dir()
            if filters.protected(path.encode(), is_dir, ignore_perishable=True):
                empty = False
                continue
            if is_dir and not delete_contents(path):
                empty = False
                continue
            deleted.add(path + ("/" if is_dir else ""))
        filters.leave_dir(rel.encode())
        return empty

    def scan(rel: str) -> None:
        src_dir = src / rel if rel else src
        sent.enter_dir(rel.encode(), read_src)
        filters.enter_dir(rel.encode(), read_dst)
        for entry in os.scandir(dst / rel if rel else dst):
            path = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir()
            if (src_dir / entry.name).exists() and not sent.excluded(path.encode(), is_dir):
                if is_dir:
                    scan(path)  # in the file list: its contents are checked in turn
                continue
            if filters.protected(path.encode(), is_dir):
                continue
            if is_dir and not delete_contents(path):
                continue
            deleted.add(path + ("/" if is_dir else ""))
        filters.leave_dir(rel.encode())
        sent.leave_dir(rel.encode())

    scan("")
    return deleted


@pytest.mark.parametrize("options", PUSH_RULES, ids=[" ".join(o) for o in PUSH_RULES])
def test_receiver_protects_what_real_rsync_keeps(tmp_path: Path, options: list[str]) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, PUSH_SRC)
    make_tree(dst, PUSH_SRC | PUSH_DST_EXTRA)
    out, c2s = run_captured(
        ["-r", "--dry-run", "-v", *options, f"{src}/", f"lh:{dst}/"], tmp_path / "caps"
    )
    delete_excluded = "--delete-excluded" in options
    receiving = FilterSet(
        server_filter_rules(wire_rules(c2s), 32, am_sender=False, delete_excluded=delete_excluded)
    )
    sending = FilterSet(option_rules(filter_args(options), delete_excluded=delete_excluded))
    assert receiver_deletions(src, dst, sending, receiving) == deletions(out)


def test_wire_rules_are_what_the_client_renders(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, PUSH_SRC)
    make_tree(dst, PUSH_SRC)
    options = ["--filter=P keep*", "--filter=H hid*", "--filter=-! *.c", "-F", "--exclude=x/"]
    _, c2s = run_captured(["-r", "--delete", *options, f"{src}/", f"lh:{dst}/"], tmp_path / "c")
    # rsync-protocol.md A.7: the sender-only H rule stays on the client
    assert wire_rules(c2s) == [b"-r keep*", b"-! *.c", b": /.rsync-filter", b"- x/"]


def test_read_filter_list_is_transactional() -> None:
    wire = b"\x07\x00\x00\x00- *.tmp" + b"\x03\x00\x00\x00+ a" + b"\x00\x00\x00\x00rest"
    buf = ReceiveBuffer()
    for fed, byte in enumerate(wire[:-5], start=1):
        buf.extend(bytes([byte]))
        assert read_filter_list(buf, 32) is None
        assert len(buf) == fed  # nothing consumed until the list is whole
    buf.extend(wire[-5:])
    assert read_filter_list(buf, 32) == [b"- *.tmp", b"+ a"]
    assert buf.take_all() == b"rest"
    with pytest.raises(RemoteProtocolError):
        read_filter_list(ReceiveBuffer(b"\xff\xff\xff\xff"), 32)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (b"x foo", "Unknown filter rule: x foo"),
        (b"-q foo", "invalid modifier 'q' at position 1 in filter rule: -q foo"),
        (b"+", "unexpected end of filter rule: +"),
        (b"! x", "'!' rule has trailing characters: ! x"),
        (b". /etc/passwd", "merge-file rules are not accepted by this server: . /etc/passwd"),
        (b"P,e foo", "invalid modifier 'e' at position 2 in filter rule: P,e foo"),
    ],
)
def test_bad_rules_are_syntax_errors(rule: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_rules([rule], 32)
    assert str(caught.value) == message
    assert caught.value.exit_code == 1


def test_old_protocols_only_have_plus_and_minus_prefixes() -> None:
    old = FilterSet(parse_rules([b"+ *.c", b"- *", b"P foo"], 28))
    assert not old.excluded(b"a.c", False)
    assert old.excluded(b"b.h", False)
    # below 29 "P foo" is a pattern, not a protect rule (it is excluded by "- *" first)
    assert FilterSet(parse_rules([b"P foo"], 28)).excluded(b"P foo", False)


def test_option_rules_use_old_prefixes_and_include_templates() -> None:
    rules = option_rules([("include", "+ *.c"), ("include", "*.h"), ("exclude", "*")])
    filters = FilterSet(rules)
    assert [filters.excluded(n, False) for n in (b"a.c", b"a.h", b"a.o")] == [False, False, True]
    with pytest.raises(RemoteProtocolError):
        option_rules([("exclude-from", "/etc/passwd")])


def test_merge_state_is_restored_on_leave(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/.f": b"- *.x\n", "d/e/.f": b"!\n+ keep.x\n- *\n"})
    filters = FilterSet(parse_rules([b": .f"], 32))
    read = reader_for(tmp_path)
    filters.enter_dir(b"", read)
    filters.enter_dir(b"d", read)
    assert filters.excluded(b"d/a.x", False)
    filters.enter_dir(b"d/e", read)
    assert not filters.excluded(b"d/e/keep.x", False)
    assert filters.excluded(b"d/e/other.y", False)  # "!" dropped the inherited rules
    filters.leave_dir(b"d/e")
    assert filters.excluded(b"d/a.x", False) and not filters.excluded(b"d/other.y", False)
    filters.leave_dir(b"d")
    assert not filters.excluded(b"a.x", False)
    filters.leave_dir(b"")
