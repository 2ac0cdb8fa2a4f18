"""-X and -A against real rsync 3.2.7: pushes into rsync, --root and the store, pulls back.

The source tree holds xattrs in the user and trusted namespaces (short values, values
longer than 32 bytes that travel as digests and are fetched on request, sets shared by
several files), and ACLs made with setfacl (named users and groups, a mask, a default
ACL, one ACL on several files), plus a symlink and a pair of hard links. Every push
goes to real ``rsync --server`` (the oracle) and to rsyncd-py (``--root`` and
``--store``): exit code, itemize lines and tree must be the same, and so must the
xattrs and ACLs, read back the way getfattr/getfacl read them (the xattr calls on the
destination directories; the store through its own FileSystem). A second push of a
changed source makes the generator report 'x' and 'a' and ask for new long values.
Pulls from the store give the source's xattrs and ACLs back, with rsync's itemize lines.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from rsyncd_py.fs.base import FileSystem
from rsyncd_py.protocol.acl_blob import ACCESS_XATTR, DEFAULT_XATTR, pack_acl_blob
from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* xattrs and owners need root"),
    pytest.mark.skipif(shutil.which("setfacl") is None, reason="needs setfacl (package acl)"),
]

T0 = 1_600_000_000  # every entry's mtime: only attributes change between versions
Attrs = dict[str, tuple[tuple[tuple[bytes, bytes], ...], bytes | None]]

# name -> (content or None for a directory, xattrs, setfacl arguments)
TREE: dict[str, tuple[bytes | None, dict[str, bytes], list[str]]] = {
    "plain": (b"plain\n", {"user.rsync.%stat": b"100644 0,0 0:0"}, []),  # -XX only
    "small": (b"small\n", {"user.a": b"1", "user.b": b"two"}, []),
    "big": (b"big\n", {"user.big": b"B" * 100, "user.small": b"s"}, []),
    "twin": (b"twin\n", {"user.big": b"B" * 100, "user.small": b"s"}, []),
    "secret": (b"secret\n", {"trusted.secret": b"T" * 40, "user.x": b"x"}, []),
    "acl": (b"acl\n", {}, ["-m", "u:1:rw-,g:4:r--"]),
    "acl-same": (b"acl-same\n", {}, ["-m", "u:1:rw-,g:4:r--"]),
    "acl-mask": (b"acl-mask\n", {"user.m": b"m"}, ["-m", "g:4:rwx,m::r--"]),
    "dir": (None, {"user.dir": b"D" * 50}, ["-m", "u:1:rwx", "-m", "d:u:1:rwx,d:g:4:r-x"]),
    "dir/inner": (b"inner\n", {"user.inner": b"i"}, []),
    "plaindir": (None, {}, []),
}
# what the second version changes (same sizes and times: only attributes differ)
CHANGES: dict[str, tuple[dict[str, bytes | None], list[str]]] = {
    "plain": ({"user.new": b"N" * 64}, []),
    "small": ({"user.a": None, "user.b": b"TWO"}, []),
    "big": ({"user.big": b"C" * 100}, []),
    "acl": ({}, ["-m", "u:1:r--"]),
    "dir": ({}, ["-k"]),
    "hard1": ({"user.h": b"h" * 40}, []),
}


def build_tree(top: Path, *, changed: bool = False) -> None:
    """The source tree (see the module docstring); `changed` applies CHANGES to it."""
    top.mkdir()
    for name, (content, xattrs, setfacl) in TREE.items():
        path = top / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
            path.chmod(0o644)
        for key, value in xattrs.items():
            os.setxattr(path, key, value)
        if setfacl:
            subprocess.run(["setfacl", *setfacl, str(path)], check=True)
    (top / "link").symlink_to("small")
    (top / "hard1").write_bytes(b"hard\n")
    os.setxattr(top / "hard1", "user.h", b"H" * 40)
    os.link(top / "hard1", top / "hard2")
    if changed:
        for name, (xattrs, setfacl) in CHANGES.items():
            path = top / name
            for key, value in xattrs.items():
                if value is None:
                    os.removexattr(path, key)
                else:
                    os.setxattr(path, key, value)
            if setfacl:
                subprocess.run(["setfacl", *setfacl, str(path)], check=True)
    for path in sorted(top.rglob("*"), reverse=True):
        os.utime(path, (T0, T0), follow_symlinks=False)
    os.utime(top, (T0, T0))


def _xattr(path: Path, name: bytes) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def local_attrs(top: Path) -> Attrs:
    """{relative path: (xattrs but system.*, Stat.acl)} read with the xattr calls."""
    attrs: Attrs = {}
    for path in [top, *sorted(top.rglob("*"))]:
        mode = os.lstat(path).st_mode
        names = sorted(os.fsencode(n) for n in os.listxattr(path, follow_symlinks=False))
        xattrs = tuple(
            (n, os.getxattr(path, n, follow_symlinks=False))
            for n in names
            if not n.startswith(b"system.")
        )
        acl = None
        if not stat.S_ISLNK(mode):
            default = _xattr(path, DEFAULT_XATTR) if stat.S_ISDIR(mode) else None
            acl = pack_acl_blob(_xattr(path, ACCESS_XATTR), default)
        attrs[str(path.relative_to(top))] = (xattrs, acl)
    return attrs


async def _fs_attrs(fs: FileSystem, top: bytes) -> Attrs:
    attrs: Attrs = {}

    async def visit(path: bytes, rel: str) -> None:
        st = await fs.lstat(path)
        assert st is not None, path
        attrs[rel] = (tuple(sorted(st.xattrs)), st.acl)
        if st.is_dir():
            for name, _ in await fs.listdir(path):
                child = os.fsdecode(name)
                await visit(path + b"/" + name, child if rel == "." else f"{rel}/{child}")

    await visit(top, ".")
    return attrs


def store_attrs(target: Target, remote: str) -> Attrs:
    """The same, read from the newest snapshot through the store's FileSystem."""
    from rsyncd_py.fs.factory import StoreOptions
    from rsyncd_py.fs.store import StoreProvider

    async def read() -> Attrs:
        provider = StoreProvider.open(
            StoreOptions(url=target.env["RSYNCD_PY_STORE"], cache_dir=str(target.home / "rd"))
        )
        try:
            fs = await provider.open_session(writable=False)
            try:
                return await _fs_attrs(fs, os.fsencode(remote))
            finally:
                await fs.close(True)
        finally:
            await provider.aclose()

    return asyncio.run(read())


def remote_attrs(target: Target, remote: str = "dst") -> Attrs:
    if target.name == "store":
        return store_attrs(target, remote)
    return local_attrs(target.home / remote)


def kept(attrs: Attrs, flags: str) -> Attrs:
    """Only what `flags` preserves: xattrs with X (rsync's own records with XX), ACLs with A."""
    out: Attrs = {}
    for rel, (xattrs, acl) in attrs.items():
        records = "XX" in flags
        sent = tuple(p for p in xattrs if records or not p[0].startswith(b"user.rsync.%"))
        out[rel] = (sent if "X" in flags else (), acl if "A" in flags else None)
    return out


def _same(oracle: RsyncResult, ours: RsyncResult) -> None:
    assert_equivalent(oracle, ours)


def _push_then_update(h: RsyncHarness, flags: str, targets: list[Target]) -> None:
    """Push the tree, then its changed version, to the oracle (first) and `targets`."""
    src = h.client_dir / "src"
    build_tree(src)
    oracle, *ours = h.differential([flags, "src/", "lh:dst/"], targets)
    want = kept(local_attrs(src), flags)
    assert kept(remote_attrs(targets[0]), flags) == want  # the oracle agrees with the source
    for target, result in zip(targets[1:], ours, strict=True):
        _same(oracle, result)
        assert kept(remote_attrs(target), flags) == want, target.name

    shutil.rmtree(src)
    build_tree(src, changed=True)
    oracle, *ours = h.differential([flags, "src/", "lh:dst/"], targets)
    want = kept(local_attrs(src), flags)
    assert kept(remote_attrs(targets[0]), flags) == want
    reported = b"".join(line[:11] for line in oracle.itemize)
    assert (b"x" in reported) == ("X" in flags) and (b"a" in reported) == ("A" in flags)
    for target, result in zip(targets[1:], ours, strict=True):
        _same(oracle, result)
        assert kept(remote_attrs(target), flags) == want, target.name


@pytest.mark.parametrize("flags", ["-aiX", "-aiA", "-aiXA", "-aiXX"])
def test_push_then_update(flags: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    _push_then_update(h, flags, [h.oracle(), h.rsyncd_root(), h.rsyncd_store()])


@pytest.mark.parametrize("target", ["root", "store"])
def test_hard_links_share_changed_xattrs(target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    ours = h.rsyncd_root() if target == "root" else h.rsyncd_store()
    _push_then_update(h, "-aiXAH", [h.oracle(), ours])


def test_dry_run_reports_like_rsync(rsync_harness: RsyncHarness) -> None:
    """-n: the same 'x'/'a' lines (and 'p', which a real run hides), nothing changed."""
    h = rsync_harness
    src = h.client_dir / "src"
    build_tree(src)
    targets = [h.oracle(), h.rsyncd_root(), h.rsyncd_store()]
    for target in targets:
        assert h.run(target, ["-aXA", "src/", "lh:dst/"], tree=None).returncode == 0
    before = [remote_attrs(target) for target in targets]
    shutil.rmtree(src)
    build_tree(src, changed=True)
    oracle, *ours = h.differential(["-aiXAn", "src/", "lh:dst/"], targets)
    assert any(line.startswith(b".f...p...a.") for line in oracle.itemize)
    for result in ours:
        _same(oracle, result)
    assert [remote_attrs(target) for target in targets] == before


def test_pull_back_from_the_store(rsync_harness: RsyncHarness) -> None:
    """What a -aXA push stored comes back whole, and updates a changed copy like rsync."""
    h = rsync_harness
    src = h.client_dir / "src"
    build_tree(src)
    oracle, store = h.oracle(), h.rsyncd_store()
    for target in (oracle, store):
        assert h.run(target, ["-aXAH", "src/", "lh:dst/"], tree=None).returncode == 0
    back = h.run(store, ["-aXA", "lh:dst/", "back/"], tree=None)  # (pulls refuse -H)
    assert back.returncode == 0, back.describe()
    want = kept(local_attrs(src), "XA")  # no user.rsync.% records without -XX
    assert local_attrs(h.client_dir / "back") == want

    # pull onto the changed version: the generator (the client) asks for the long values
    copies = {}
    for target in (oracle, store):
        copies[target.name] = h.client_dir / f"copy-{target.name}"
        build_tree(copies[target.name], changed=True)
    results = [
        h.run(t, ["-aiXA", "lh:dst/", f"copy-{t.name}/"], tree=None) for t in (oracle, store)
    ]
    assert results[1].returncode == results[0].returncode == 0, results[1].describe()
    assert results[1].itemize == results[0].itemize
    assert any(b"x" in line[:11] for line in results[0].itemize)
    assert local_attrs(copies["store"]) == local_attrs(copies["oracle"]) == want


@pytest.mark.parametrize("flags", ["-aiX", "-aiA"])
def test_pull_from_root_onto_a_changed_copy(flags: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    oracle, root = h.oracle(), h.rsyncd_root()
    for target in (oracle, root):
        build_tree(target.home / "src")
        build_tree(h.client_dir / f"copy-{target.name}", changed=True)
    o, r = (h.run(t, [flags, "lh:src/", f"copy-{t.name}/"], tree=None) for t in (oracle, root))
    assert r.returncode == o.returncode == 0, r.describe()
    assert r.itemize == o.itemize and o.itemize
    assert local_attrs(h.client_dir / "copy-root") == local_attrs(h.client_dir / "copy-oracle")


@pytest.mark.parametrize("flag", ["-X", "-A"])
def test_refused_below_protocol_30(flag: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    build_tree(h.client_dir / "src")
    oracle, root = h.oracle(), h.rsyncd_root()
    o, r = (
        h.run(t, ["-a", flag, "--protocol=29", "src/", "lh:dst/"], tree=None)
        for t in (oracle, root)
    )
    assert r.returncode == o.returncode == 2
    name = "--xattrs" if flag == "-X" else "--acls"
    assert f"{name} requires protocol 30 or higher (negotiated 29)".encode() in r.stderr
    assert not (root.home / "dst").exists()
