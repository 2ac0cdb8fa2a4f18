"""--files-from against real rsync 3.2.7: lists on the client and on the server, pushed
and pulled, with --from0, -r, --no-relative, --no-implied-dirs and old protocols.

The lists name files, a directory, a file deep in the tree (implied directories), odd
names, "./" and ".." forms and an absolute name (the sender cleans them), and a
symlink. A server-side list (``--files-from=lh:lists/NAME``) lives in the served tree:
in rsync's and --root's home directory, and pushed into the store. Each case must give
the same exit code, itemize lines, -v listing and tree as real rsync; protocol 30 is
the one where the client's list travels unframed between multiplexed data.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent
from tests.helpers.trees import snapshot
from tests.interop.conftest import TARGETS, make_target

NAMES = [
    b"size-700",
    b"dir/sub/nested",
    b"names/with space",
    b"empty",
    b"./size-1",
    b"/size-699",
    b"private/",
    b"link-relative",
    b"size-700",
]
LISTS = {
    "plain": b"\n".join(NAMES) + b"\n",
    "crlf-no-final-newline": b"\r\n".join(NAMES),
    "nul": b"\0".join(NAMES) + b"\0",
    # comments and empty lines count only where the list is read as a file
    "commented": b"# a comment\n; another\n\n" + b"\n".join(NAMES[:3]) + b"\n",
}
# "." is not transferred; rsync leaves the times of implied directories "now" here
COMPARE = {"root_time": False, "dir_times": False, "ignore": {"links"}}


def _write_lists(top: Path) -> None:
    (top / "lists").mkdir(parents=True, exist_ok=True)
    for name, data in LISTS.items():
        (top / "lists" / name).write_bytes(data)


def _serve(h: RsyncHarness, target: Target, varied: Path) -> None:
    """`src` = the varied tree and `lists/` = the lists, on the server side."""
    if target.name == "store":
        _write_lists(h.tmp / "server-lists")
        for src, dest in ((varied, "src"), (h.tmp / "server-lists" / "lists", "lists")):
            result = h.run(target, ["-a", f"{src}/", f"lh:{dest}/"], tree=None)
            assert result.returncode == 0, result.describe()
        return
    subprocess.run(["cp", "-a", str(varied), str(target.home / "src")], check=True)
    _write_lists(target.home)


def _pull(h: RsyncHarness, target: Target, args: list[str]) -> RsyncResult:
    result = h.run(target, [*args, "lh:src/", "pulled/"], tree=None)
    local = h.client_dir / "pulled"
    tree = snapshot(local) if local.exists() else None
    if local.exists():
        local.rename(h.client_dir / f"pulled-{target.name}")
    # rsyncd-py may decline incremental recursion: that session line differs
    listing = [line for line in result.listing if not line.startswith(b"receiving ")]
    return replace(result, tree=tree, listing=listing)


PULL_CLIENT = {
    "plain": ("--files-from=../lists/plain",),
    "crlf": ("--files-from=../lists/crlf-no-final-newline",),
    "from0": ("--files-from=../lists/nul", "--from0"),
    "commented": ("--files-from=../lists/commented",),
    "recursive": ("--files-from=../lists/plain", "-r"),
    "no-relative": ("--files-from=../lists/plain", "--no-relative"),
    "no-implied-dirs": ("--files-from=../lists/plain", "--no-implied-dirs"),
    "protocol-31": ("--files-from=../lists/plain", "--protocol=31"),
    "protocol-30": ("--files-from=../lists/plain", "--protocol=30"),
    "protocol-29": ("--files-from=../lists/nul", "--from0", "--protocol=29"),
    "verbose": ("--files-from=../lists/plain", "-v"),
}
PULL_SERVER = {
    "plain": ("--files-from=lh:lists/plain",),
    "crlf": ("--files-from=lh:lists/crlf-no-final-newline",),
    "from0": ("--files-from=lh:lists/nul", "--from0"),
    "commented": ("--files-from=lh:lists/commented",),
    "recursive": ("--files-from=lh:lists/plain", "-r"),
    "protocol-30": ("--files-from=lh:lists/plain", "--protocol=30"),
    "protocol-29": ("--files-from=lh:lists/plain", "--protocol=29"),
}


@pytest.mark.parametrize(
    "args",
    [*PULL_CLIENT.values(), *PULL_SERVER.values()],
    ids=[f"client-{k}" for k in PULL_CLIENT] + [f"server-{k}" for k in PULL_SERVER],
)
@pytest.mark.parametrize("target", TARGETS)
def test_pull(
    args: tuple[str, ...], target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    h = rsync_harness
    _write_lists(h.tmp)  # the client's lists (../lists/ from the client directory)
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        _serve(h, t, varied_tree)
    o, r = (_pull(h, t, ["-ai", *args]) for t in (oracle, ours))
    assert o.returncode in (0, 23), o.describe()  # 23: comments in a forwarded list
    assert_equivalent(o, r, **COMPARE)  # type: ignore[arg-type]


PUSH = {
    "client-plain": ("--files-from=../lists/plain",),
    "client-from0": ("--files-from=../lists/nul", "--from0"),
    "client-recursive-no-implied-dirs": ("--files-from=../lists/plain", "-r", "--no-implied-dirs"),
    "client-protocol-29": ("--files-from=../lists/plain", "--protocol=29"),
    "server-plain": ("--files-from=lh:lists/plain",),
    "server-crlf": ("--files-from=lh:lists/crlf-no-final-newline",),
    "server-from0": ("--files-from=lh:lists/nul", "--from0"),
    "server-commented": ("--files-from=lh:lists/commented",),  # comments are names here
    "server-recursive": ("--files-from=lh:lists/plain", "-r"),
    "server-no-relative": ("--files-from=lh:lists/plain", "--no-relative"),
    "server-protocol-30": ("--files-from=lh:lists/plain", "--protocol=30"),
    "server-protocol-29": ("--files-from=lh:lists/nul", "--from0", "--protocol=29"),
    "server-verbose": ("--files-from=lh:lists/plain", "-v"),
}


@pytest.mark.parametrize("args", PUSH.values(), ids=PUSH.keys())
@pytest.mark.parametrize("target", TARGETS)
def test_push(
    args: tuple[str, ...], target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    h = rsync_harness
    _write_lists(h.tmp)
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        if t.name == "store":
            result = h.run(t, ["-a", f"{h.tmp}/lists/", "lh:lists/"], tree=None)
            assert result.returncode == 0, result.describe()
        else:
            _write_lists(t.home)
    o, r = h.differential(["-ai", *args, "src/", "lh:dst/"], [oracle, ours])
    assert o.returncode in (0, 23), o.describe()
    assert_equivalent(o, r, **COMPARE)  # type: ignore[arg-type]


@pytest.mark.parametrize("direction", ["push", "pull"])
@pytest.mark.parametrize("target", TARGETS)
def test_missing_or_escaping_server_list(
    direction: str, target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """A server-side list that cannot be opened ends the session before it starts."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        _serve(h, t, varied_tree)
    paths = [b"lh:lists/nope", b"lh:../../etc/passwd"]
    for path in paths:
        files_from = f"--files-from={path.decode()}"
        ends = ["src/", "lh:dst/"] if direction == "push" else ["lh:src/", "out/"]
        r = h.run(ours, ["-a", files_from, *ends], tree=None)
        assert r.returncode == 12, r.describe()  # the client sees the server give up
        assert b"failed to open files-from file" in r.stderr, r.describe()
    o = h.run(oracle, ["-a", "--files-from=lh:lists/nope", *ends], tree=None)
    assert o.returncode == 12 and b"failed to open files-from file" in o.stderr
    assert not (h.client_dir / "out").exists() and not (ours.home / "dst").exists()
