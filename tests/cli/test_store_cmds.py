"""The store subcommands, run as a user would: `rsyncd-py ...` in a subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blockstore.volume import TreeEntry, open_volume
from blockstore.volume.lease import Lease

RANDOM = os.urandom(700_000)
NAMES = {b"plain.txt": b"hello\n", b"new\nline": b"odd", b"\xff\xfebin": RANDOM}


class Cli:
    """Runs `rsyncd-py` against one store with its own state and cache dirs."""

    def __init__(self, url: str, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = {**os.environ, **(env or {}), "XDG_CACHE_HOME": str(tmp_path / "cache"),
                    "RSYNCD_PY_STORE": url}
        self.env.pop("RSYNCD_PY_PASSPHRASE", None)

    def __call__(
        self, *args: str, check: int | None = 0, **kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "rsyncd_py.cli.main", *args], env=self.env,
            capture_output=True, timeout=120, check=False, **kw,
        )  # fmt: skip
        if check is not None:
            assert result.returncode == check, result.stderr.decode()
        if result.returncode:
            assert b"Traceback" not in result.stderr, result.stderr.decode()
        return result

    def populate(self, key_file: str | None = None, **options: Any) -> None:
        """Two snapshots written through the volume API (pushes are the protocol's tests)."""
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS")})
        volume = open_volume(self.url, key_file=key_file, **options)
        try:
            tx = volume.begin()
            tx.mkdir(b"dir", TreeEntry(b"dir", stat.S_IFDIR | 0o755))
            for name, data in NAMES.items():
                builder = volume.new_file()
                builder.write(data)
                entry = TreeEntry(name, stat.S_IFREG | 0o640, mtime_ns=1_700_000_000 * 10**9)
                tx.put_file(b"dir/" + name, entry, builder.finish())
            tx.commit()
            tx = volume.begin()
            tx.remove(b"dir/plain.txt")
            tx.commit()
        finally:
            volume.close()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(str(tmp_path / "store"), tmp_path)


def test_init_refuses_an_existing_store(cli: Cli) -> None:
    out = cli("init", "--chunk-size", "32768").stdout.decode()
    assert "created unencrypted store" in out and "mean chunk 32.0 KiB" in out
    err = cli("init", check=1).stderr.decode()
    assert err.strip() == f"rsyncd-py init: store already exists at {cli.url}"


def test_read_commands(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    cli.populate(state_dir=tmp_path / "writer-state")
    snapshots = json.loads(cli("snapshots", "--json").stdout)
    assert len(snapshots) == 2 and snapshots[0]["stats"]["files"] == 3
    assert cli("ls").stdout == b"dir\n"
    listing = cli("ls", "dir").stdout.decode()
    assert listing.splitlines() == ["new\\nline", "\\xff\\xfebin"]
    long = cli("ls", "-l", "dir").stdout.decode()
    assert "-rw-r-----" in long and str(len(RANDOM)) in long and "2023-11-14 22:13:20" in long
    first = snapshots[0]["id"]
    assert cli("ls", "--snapshot", first, "dir").stdout.decode().count("\n") == 3
    assert cli("cat", os.fsdecode(b"dir/\xff\xfebin")).stdout == RANDOM
    assert cli("cat", "--snapshot", first, "dir/plain.txt").stdout == b"hello\n"
    err = cli("cat", "dir/plain.txt", check=1).stderr.decode()
    assert "dir/plain.txt: no such file in snapshot" in err
    assert "not a regular file" in cli("cat", "dir", check=1).stderr.decode()


def test_maintenance_commands(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    cli.populate(state_dir=tmp_path / "writer-state")
    assert "no errors" in cli("fsck").stdout.decode()
    report = json.loads(cli("fsck", "--read-data", "--json").stdout)
    assert report["ok"] and report["files"] >= 3 and report["bytes_read"] > len(RANDOM)
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["snapshots"] == 2 and stats["files"] == 2
    assert stats["logical_bytes"] == len(RANDOM) + 3
    assert stats["requests_total"]["puts"] >= 2 and stats["monthly_cost"]["total"] > 0
    assert "monthly cost" in cli("stats", "--price-storage", "1").stdout.decode()
    forget = cli("forget", "--keep-last", "1", "--dry-run").stdout.decode()
    assert "1 of 2 snapshots would be removed" in forget
    assert "1 of 2 snapshots removed" in cli("forget", "--keep-last", "1").stdout.decode()
    gc = json.loads(cli("gc", "--grace", "0", "--json").stdout)
    assert gc["deleted_objects"] >= 1
    assert "indexed" in cli("reindex").stdout.decode()
    assert "no errors" in cli("fsck", "--read-data").stdout.decode()
    assert "no policy" not in cli("forget", check=1).stderr.decode()


def test_fsck_fails_on_a_missing_pack(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    cli.populate(state_dir=tmp_path / "writer-state")
    packs = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and "packs" in p.parts]
    assert packs
    packs[0].unlink()
    result = cli("fsck", check=1)
    assert b"error: blocks/" in result.stdout or b"error: trees/" in result.stdout


def test_user_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    env_less = Cli(cli.url, tmp_path)
    env_less.env.pop("RSYNCD_PY_STORE")
    assert "no store: pass --store URL" in env_less("ls", check=1).stderr.decode()
    assert "no store at" in cli("ls", check=1).stderr.decode()
    assert "relative" in cli("ls", "--store", "relative/path", check=1).stderr.decode().lower()
    cli("init")
    assert "no snapshots yet" in cli("ls", check=1).stderr.decode()


def test_encrypted_store_and_lease(cli: Cli, tmp_path: Path) -> None:
    key = str(tmp_path / "store.key")
    cli("init", "--encrypt", "--key-file", key)
    assert os.stat(key).st_mode & 0o777 == 0o600
    cli.populate(key_file=key, state_dir=tmp_path / "writer-state")
    assert cli("cat", "--key-file", key, os.fsdecode(b"dir/\xff\xfebin")).stdout == RANDOM
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    err = cli("ls", "--key-file", str(other), check=1).stderr.decode()
    assert "wrong passphrase or key file" in err
    assert "pass --key-file" in cli("ls", check=1, stdin=subprocess.DEVNULL).stderr.decode()
    volume = open_volume(cli.url, key_file=key, state_dir=tmp_path / "holder")
    volume.lease = Lease(volume.stack.raw, host="holder-host")  # type: ignore[union-attr]
    volume.lease.acquire()
    try:
        err = cli("gc", "--key-file", key, check=1).stderr.decode()
        assert f"store is locked by holder-host pid {os.getpid()} since" in err
        cli("gc", "--key-file", key, "--force")
    finally:
        volume.close()


def test_s3_store(moto_s3: Any, tmp_path: Path) -> None:
    cli = Cli(moto_s3.url(), tmp_path, moto_s3.env)
    cli("init")
    cli.populate(state_dir=tmp_path / "writer-state")
    assert cli("ls", "dir").stdout.decode().splitlines() == ["new\\nline", "\\xff\\xfebin"]
    assert cli("cat", os.fsdecode(b"dir/\xff\xfebin")).stdout == RANDOM
    assert json.loads(cli("fsck", "--read-data", "--json").stdout)["ok"]
