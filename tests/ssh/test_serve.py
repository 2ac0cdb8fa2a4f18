"""``rsyncd-py serve`` as a subprocess, driven by the real ssh and rsync clients.

The transport's behaviour in detail is in test_transport.py (in-process, stand-in
session); here the whole product runs: CLI, host key handling, start-up line, signals,
and rsync pushes and pulls through ``rsyncd_py.session.run_server`` into a plain
directory (``--root``), the default local store and an encrypted S3 store (moto).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.ssh_keys import ServeHandle, ssh_env

REFUSAL = b"rsyncd-py: only rsync server commands are allowed\n"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _make_source(root: Path, files: int = 20, big: int = 0) -> Path:
    root.mkdir(parents=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(files):
        (root / ("sub" if i % 2 else "") / f"file{i}.txt").write_bytes(os.urandom(100 + i * 37))
    (root / "sub" / "deeper" / "name with spaces & $ymbols;").write_bytes(b"odd name\n")
    if big:
        (root / "big.bin").write_bytes(os.urandom(big))
    return root


def test_start_up_line_and_host_key(rsyncd_serve: ServeHandle) -> None:
    log = rsyncd_serve.log_text()
    assert f"listening on 127.0.0.1:{rsyncd_serve.port}" in log
    assert rsyncd_serve.fingerprint.startswith("SHA256:")
    assert f"try: rsync -a -e 'ssh -p {rsyncd_serve.port}' src/ 127.0.0.1:dst/" in log
    key_file = rsyncd_serve.keys.host_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Path(f"{key_file}.pub").read_bytes().startswith(b"ssh-ed25519 ")


def test_host_key_is_kept_across_restarts(rsyncd_serve_factory: object, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first: ServeHandle = rsyncd_serve_factory(root=root, name="first")  # type: ignore[operator]
    assert first.stop() == 0
    second: ServeHandle = rsyncd_serve_factory(root=root, name="second")  # type: ignore[operator]
    assert second.fingerprint == first.fingerprint
    assert "generated a new host key" in first.log_text()
    assert "generated a new host key" not in second.log_text()


def test_sigterm_stops_cleanly(rsyncd_serve: ServeHandle) -> None:
    assert rsyncd_serve.stop(signal.SIGTERM) == 0
    log = rsyncd_serve.log_text()
    assert "SIGTERM: shutting down" in log
    assert log.rstrip().endswith("stopped")


def test_lockdown_through_the_cli(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    refused = rsyncd_serve.ssh(f"rsync --server . x; touch {canary}")
    assert (refused.returncode, refused.stderr) == (1, REFUSAL)
    denied = rsyncd_serve.ssh("rsync --server . x", key=rsyncd_serve.keys.stranger)
    assert denied.returncode == 255
    assert b"Permission denied (publickey)" in denied.stderr
    assert not canary.exists()
    assert "refused command" in rsyncd_serve.log_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nonsense"], "expected HOST:PORT"),
        (["--root", "/nonexistent/dir"], "not a directory"),
        (["--root", "/", "--ciphers", "rot13"], "--ciphers: unknown rot13"),
        (["--listen", "203.0.113.1:2222", "--root", "/"], "cannot listen"),
    ],
)
def test_start_up_errors_are_one_clear_line(
    args: list[str], message: str, tmp_path: Path, ssh_keys: object
) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "rsyncd_py.cli.main", "serve",
            "--data-dir", str(tmp_path / "data"),
            "--authorized-keys", str(tmp_path / "none"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "rsyncd-py serve: " in result.stderr and message in result.stderr


def test_push_with_real_rsync(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    source = _make_source(tmp_path / "src", big=3 << 20)
    push = rsyncd_serve.rsync("-a", f"{source}/", rsyncd_serve.dest("backup/"))
    assert push.returncode == 0, push.stderr
    assert rsyncd_serve.root is not None
    assert _tree(rsyncd_serve.root / "backup") == _tree(source)
    log = rsyncd_serve.log_text()
    assert "start: 'rsync --server " in log
    assert "end: exit 0" in log


def test_pull_with_real_rsync(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    assert rsyncd_serve.root is not None
    source = _make_source(rsyncd_serve.root / "backup", big=3 << 20)
    back = tmp_path / "back"
    pull = rsyncd_serve.rsync("-a", rsyncd_serve.dest("backup/"), f"{back}/")
    assert pull.returncode == 0, pull.stderr
    assert _tree(back) == _tree(source)


def test_read_only_key_cannot_push(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    assert rsyncd_serve.root is not None
    (rsyncd_serve.root / "shared").mkdir()
    source = _make_source(tmp_path / "src", files=2)
    key = rsyncd_serve.keys.readonly
    push = rsyncd_serve.rsync("-a", f"{source}/", rsyncd_serve.dest("shared/"), key=key)
    assert push.returncode != 0
    assert b"read-only" in push.stderr
    assert os.listdir(rsyncd_serve.root / "shared") == []


def test_read_only_key_can_pull(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    assert rsyncd_serve.root is not None
    (rsyncd_serve.root / "shared").mkdir()
    (rsyncd_serve.root / "shared" / "a.txt").write_bytes(b"hello")
    key = rsyncd_serve.keys.readonly
    pull = rsyncd_serve.rsync("-a", rsyncd_serve.dest("shared/"), f"{tmp_path / 'got'}/", key=key)
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "got" / "a.txt").read_bytes() == b"hello"


def test_two_concurrent_pushes(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    sources = [_make_source(tmp_path / f"src{i}", files=30, big=2 << 20) for i in range(2)]
    results: list[subprocess.CompletedProcess[bytes]] = [None, None]  # type: ignore[list-item]

    def push(i: int) -> None:
        results[i] = rsyncd_serve.rsync("-a", f"{sources[i]}/", rsyncd_serve.dest(f"dst{i}/"))

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert rsyncd_serve.root is not None
    for i in range(2):
        assert results[i].returncode == 0, results[i].stderr
        assert _tree(rsyncd_serve.root / f"dst{i}") == _tree(sources[i])


def test_server_survives_a_client_killed_mid_transfer(
    rsyncd_serve: ServeHandle, tmp_path: Path
) -> None:
    source = _make_source(tmp_path / "src", files=2, big=64 << 20)
    client = subprocess.Popen(
        ["rsync", "-a", "--bwlimit=4m", "-e", rsyncd_serve.ssh_cmd, f"{source}/",
         rsyncd_serve.dest("victim/")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ssh_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "start:" not in rsyncd_serve.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let some data flow
    client.kill()
    client.wait()
    deadline = time.monotonic() + 60
    while "end: exit" not in rsyncd_serve.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "end: exit" in rsyncd_serve.log_text()
    again = _make_source(tmp_path / "again", files=3)
    result = rsyncd_serve.rsync("-a", f"{again}/", rsyncd_serve.dest("after/"))
    assert result.returncode == 0, result.stderr
    assert rsyncd_serve.process.poll() is None


def _push_into_default_store(factory: object, tmp_path: Path) -> tuple[ServeHandle, Path]:
    server: ServeHandle = factory(root=None, name="store")  # type: ignore[operator]
    assert "created a new local store" in server.log_text()
    assert (server.data_dir / "store").is_dir()
    source = _make_source(tmp_path / "src", big=1 << 20)
    push = server.rsync("-a", f"{source}/", server.dest("docs/"))
    assert push.returncode == 0, push.stderr
    return server, source


def test_default_data_dir_store_push(rsyncd_serve_factory: object, tmp_path: Path) -> None:
    server, _ = _push_into_default_store(rsyncd_serve_factory, tmp_path)
    assert server.stop() == 0
    again: ServeHandle = rsyncd_serve_factory(root=None, name="store")  # type: ignore[operator]
    assert again.log_text().count("created a new local store") == 1  # same log file, same store


def test_default_data_dir_store_pull(rsyncd_serve_factory: object, tmp_path: Path) -> None:
    server, source = _push_into_default_store(rsyncd_serve_factory, tmp_path)
    back = tmp_path / "back"
    pull = server.rsync("-a", server.dest("docs/"), f"{back}/")
    assert pull.returncode == 0, pull.stderr
    assert _tree(back) == _tree(source)
    # README step 4: an older snapshot, after the tree changed.
    (source / "file0.txt").write_bytes(b"changed")
    assert server.rsync("-a", f"{source}/", server.dest("docs/")).returncode == 0
    listed = _cli("snapshots", "--store", str(server.data_dir / "store"), env={})
    first = listed.stdout.split()[0]
    older = tmp_path / "older"
    pull = server.rsync("-a", server.dest(f"/.snapshots/{first}/docs/"), f"{older}/")
    assert pull.returncode == 0, pull.stderr
    assert (older / "file0.txt").read_bytes() != b"changed"
    assert set(_tree(older)) == set(_tree(source))
    assert server.stop() == 0


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rsyncd_py.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_encrypted_s3_store_as_in_the_readme(
    rsyncd_serve_factory: object, moto_s3: Any, tmp_path: Path
) -> None:
    url, key_file = moto_s3.url(), str(tmp_path / "backups.key")
    init = _cli("init", "--store", url, "--encrypt", "--key-file", key_file, env=moto_s3.env)
    assert init.returncode == 0, init.stderr
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    server: ServeHandle = rsyncd_serve_factory(  # type: ignore[operator]
        extra_args=["--store", url, "--key-file", key_file], env=moto_s3.env, name="s3"
    )
    assert f"store {url}" in server.log_text()
    source = _make_source(tmp_path / "src", big=1 << 20)
    marker = b"CONFIDENTIAL-PAYROLL-7f3e"
    (source / "sub" / "ledger.txt").write_bytes(marker + b" salary line\n" * 20_000)
    push = server.rsync("-a", f"{source}/", server.dest("documents/"))
    assert push.returncode == 0, push.stderr
    back = tmp_path / "back"
    pull = server.rsync("-a", server.dest("documents/"), f"{back}/")
    assert pull.returncode == 0, pull.stderr
    assert _tree(back) == _tree(source)
    assert server.stop() == 0  # commits and releases the store
    # nothing of the source in the bucket: neither content (compressible text) nor names
    client, prefix = moto_s3.client(), url.split("/", 3)[3] + "/"
    keys = [item["Key"] for item in client.list_objects_v2(
        Bucket=moto_s3.bucket, Prefix=prefix)["Contents"]]  # fmt: skip
    assert any(key.startswith(prefix + "packs/") for key in keys), keys
    for key in keys:
        body = client.get_object(Bucket=moto_s3.bucket, Key=key)["Body"].read()
        for known in (marker, b"salary line", b"ledger.txt", b"name with spaces"):
            assert known not in body, (key, known)
    listed = _cli("snapshots", "--store", url, "--key-file", key_file, env=moto_s3.env)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 1
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(os.urandom(32))
    refused = _cli("snapshots", "--store", url, "--key-file", str(wrong_key), env=moto_s3.env)
    assert refused.returncode != 0


def _start_slow_push(server: ServeHandle, source: Path, dest: str) -> subprocess.Popen[bytes]:
    """An rsync push throttled so that it is still running a few seconds later."""
    before = server.log_text().count("start:")
    client = subprocess.Popen(
        ["rsync", "-a", "--bwlimit=2m", "-e", server.ssh_cmd, f"{source}/", server.dest(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ssh_env(),
    )
    deadline = time.monotonic() + 60
    while server.log_text().count("start:") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the transfer get going
    return client


def test_sigterm_lets_a_running_push_finish(rsyncd_serve: ServeHandle, tmp_path: Path) -> None:
    source = _make_source(tmp_path / "src", files=2, big=6 << 20)
    client = _start_slow_push(rsyncd_serve, source, "finished/")
    rsyncd_serve.process.send_signal(signal.SIGTERM)
    _, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert rsyncd_serve.process.wait(120) == 0
    assert rsyncd_serve.root is not None
    assert _tree(rsyncd_serve.root / "finished") == _tree(source)
    assert "waiting up to 60s for 1 running session(s)" in rsyncd_serve.log_text()


def test_sigterm_after_the_grace_period_leaves_a_sound_store(
    rsyncd_serve_factory: object, tmp_path: Path
) -> None:
    server: ServeHandle = rsyncd_serve_factory(  # type: ignore[operator]
        root=None, extra_args=["--grace", "0.5"], name="grace"
    )
    source = _make_source(tmp_path / "src", files=2, big=32 << 20)
    client = _start_slow_push(server, source, "cut/")
    server.process.send_signal(signal.SIGTERM)
    _, err = client.communicate(timeout=120)
    assert client.returncode != 0
    assert b"server shutting down, session aborted" in err
    assert server.process.wait(120) == 0
    fsck = _cli("fsck", "--store", str(server.data_dir / "store"), env={})
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
