"""Issue 3's end-to-end acceptance: the block store under the real rsync client.

- **Injected faults**: a server started with ``RSYNCD_PY_FAULTS`` (10% transient
  errors on get/put/list, random latency) takes a push and serves the pull back
  exactly, on a local-directory store and on S3 (moto); its log shows the faults the
  retry layer absorbed. A spec that does not parse ends the server before the protocol.
- **kill -9 during a push to S3**: ``rsyncd-py serve`` is killed while packs of a
  second, bigger tree are uploading. Restarted as an operator would (same command, same
  state dir), it takes over the dead process's lease; fsck passes, the first snapshot
  pulls back intact, and the repeated push completes exactly without uploading again
  the packs the killed server had stored.
- **A flipped byte**: one byte of one block inside its pack is flipped below every
  layer. A pull of the tree fails that file with rsync's exit 23 (it never arrives with
  wrong content), the other files arrive intact, and ``fsck --read-data`` names the
  object. Plain and encrypted stores. A delta push onto that file warns ("read errors
  mapping") and completes instead of ending the session.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import ChunkParams, VolumeParams, open_volume
from rsyncd_py.fs.store import FAULTS_ENV
from tests.helpers.moto_server import MotoS3
from tests.helpers.rsync_harness import RSYNCD_PY, RsyncHarness, Target, store_tree
from tests.helpers.ssh_keys import ServeHandle, ssh_argv, ssh_env
from tests.helpers.trees import assert_same_tree, snapshot, write_file

FAULTS = "seed=7,transient=0.1,ops=get+put+list,latency=0.2,delay=0.005"
# small blocks and packs: many requests, so there are faults to survive
SMALL = VolumeParams(chunk=ChunkParams.for_average(8 << 10), pack_size=64 << 10)
_INJECTED = re.compile(r"retry: \S+ .*?: (\w+) \S+: injected transient fault")


def _store_target(
    h: RsyncHarness, url: str, params: VolumeParams, *, key_file: Path | None = None,
    env: dict[str, str] | None = None,
) -> Target:
    """A fresh store at `url` with `params`, served over stdio with a log file."""
    home = h.tmp / "store"
    home.mkdir(exist_ok=True)
    create_store(url, encrypt=key_file is not None,
                 key_file=str(key_file) if key_file else None, volume=params.to_config())
    options = ["--state-dir", str(home / "state"), "--log-file", str(home / "server.log")]
    options += ["--key-file", str(key_file)] if key_file else []
    return Target("store", f"{RSYNCD_PY} {shlex.join(options)}", home, store_tree,
                  {**(env or {}), "RSYNCD_PY_STORE": url}, knows_allocation=False)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rsyncd_py.cli.main", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


# -- injected faults -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["localdir", "s3"])
def test_push_and_pull_round_trip_through_injected_faults(
    rsync_harness: RsyncHarness, varied_tree: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    h = rsync_harness
    root_time = varied_tree.stat().st_mtime_ns
    write_file(varied_tree / "random-1m", os.urandom(1 << 20), 1_600_000_000_000_000_000)
    os.utime(varied_tree, ns=(root_time, root_time))  # rsync#802: no directory time "now"
    env = {FAULTS_ENV: FAULTS}
    if backend == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        url = request.getfixturevalue("s3_url")
        env.update(moto.env)
    else:
        url = str(h.tmp / "bucket")
    target = _store_target(h, url, SMALL, env=env)

    push = h.run(target, ["-aH", "src/", "lh:dst/"], tree=None)
    assert push.returncode == 0, push.describe()
    pull = h.run(target, ["-aH", "lh:dst/", "back/"], tree=None)
    assert pull.returncode == 0, pull.describe()
    assert_same_tree(snapshot(varied_tree), snapshot(h.client_dir / "back"))

    log = (target.home / "server.log").read_text()
    assert log.count(f"{FAULTS_ENV} is set: injecting store faults") == 2  # each session
    injected = _INJECTED.findall(log)
    assert {"get", "put"} <= set(injected), log  # both directions were hit, and survived
    assert "gave up" not in log


def test_a_bad_fault_spec_refuses_to_serve(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    target = _store_target(h, str(h.tmp / "bucket"), SMALL, env={FAULTS_ENV: "transient=x"})
    push = h.run(target, ["-a", ".", "lh:dst/"], tree=None)
    assert push.returncode == 12, push.describe()  # the server exited before the protocol
    assert f"rsyncd-py: {FAULTS_ENV}='transient=x': ".encode() in push.stderr, push.describe()
    assert b"(code 1) at server" in push.stderr


# -- kill -9 of the server during a push to S3 ---------------------------------------


def _packs(moto: MotoS3, url: str) -> dict[str, int]:
    """The pack objects under the store `url`: key -> size."""
    prefix = url.removeprefix(f"s3://{moto.bucket}/") + "/packs/"
    pages = moto.client().get_paginator("list_objects_v2").paginate(
        Bucket=moto.bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ())}


def _bytes_up(url: str, state: Path, env: dict[str, str]) -> int:
    """Bytes uploaded by every session the store's snapshots recorded."""
    done = _cli("stats", "--json", "--store", url, "--state-dir", str(state), env=env)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["requests_total"]["bytes_up"])


def _random_tree(root: Path, files: int, size: int) -> Path:
    for n in range(files):
        write_file(root / f"part-{n}", os.urandom(size), 1_600_000_000_000_000_000 + n)
    os.utime(root, ns=(1_600_000_000_000_000_000,) * 2)  # rsync#802: no directory time "now"
    return root


def test_kill_9_during_a_push_to_s3(
    rsyncd_serve_factory: object, moto_s3: MotoS3, s3_url: str, tmp_path: Path
) -> None:
    url, env, cli_state = s3_url, moto_s3.env, tmp_path / "cli-state"
    create_store(url, volume=VolumeParams(pack_size=2 << 20).to_config())
    serve_args = ["--store", url, "--state-dir", str(tmp_path / "serve-state")]

    def serve(name: str) -> ServeHandle:
        return rsyncd_serve_factory(extra_args=serve_args, env=env, name=name)  # type: ignore[operator]

    first_tree = _random_tree(tmp_path / "first", 3, 100_000)
    big_tree = _random_tree(tmp_path / "big", 6, 4 << 20)
    server = serve("killed")
    done = server.rsync("-a", f"{first_tree}/", server.dest("first/"))
    assert done.returncode == 0, done.stderr
    packs_before = _packs(moto_s3, url)
    bytes_up_before = _bytes_up(url, cli_state, env)

    # --bwlimit keeps the push going for seconds, so the kill lands in the middle of it
    rsh = " ".join(ssh_argv(server.port, server.key))
    client = subprocess.Popen(
        ["rsync", "-a", "--bwlimit=8m", "-e", rsh, f"{big_tree}/", server.dest("big/")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ssh_env())
    deadline = time.monotonic() + 60
    while len(_packs(moto_s3, url)) < len(packs_before) + 2:
        assert client.poll() is None, "the push ended before two packs were uploaded"
        assert time.monotonic() < deadline, "no packs uploaded within 60 s"
        time.sleep(0.05)
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(timeout=30) == -signal.SIGKILL
    client.communicate(timeout=60)
    assert client.returncode != 0
    orphaned = sum(size for key, size in _packs(moto_s3, url).items() if key not in packs_before)
    lease = moto_s3.client().get_object(
        Bucket=moto_s3.bucket, Key=url.removeprefix(f"s3://{moto_s3.bucket}/") + "/lease")
    assert json.loads(lease["Body"].read())["pid"] == server.process.pid  # left behind

    fsck = _cli("fsck", "--store", url, "--state-dir", str(cli_state), env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "no errors" in fsck.stdout

    again = serve("restarted")  # what an operator does: start it again, same options
    snapshots = _cli("snapshots", "--json", "--store", url, "--state-dir", str(cli_state), env=env)
    first_id = json.loads(snapshots.stdout)[0]["id"]
    done = again.rsync("-a", again.dest(f"/.snapshots/{first_id}/first/"),
                       f"{tmp_path}/first-back/")
    assert done.returncode == 0, done.stderr
    assert_same_tree(snapshot(first_tree), snapshot(tmp_path / "first-back"), root_time=False)

    done = again.rsync("-a", f"{big_tree}/", again.dest("big/"))
    assert done.returncode == 0, done.stderr
    assert "taking over the stale store lease" in again.log_text()
    done = again.rsync("-a", again.dest("big/"), f"{tmp_path}/big-back/")
    assert done.returncode == 0, done.stderr
    assert_same_tree(snapshot(big_tree), snapshot(tmp_path / "big-back"))

    # the packs the killed server stored are reused, not uploaded again
    big = 6 * (4 << 20)
    repeated = _bytes_up(url, cli_state, env) - bytes_up_before
    assert orphaned >= 2 * (2 << 20) - (64 << 10)
    assert repeated + orphaned <= big + (1 << 20), (repeated, orphaned, big)
    fsck = _cli("fsck", "--store", url, "--state-dir", str(cli_state), env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


# -- a flipped byte ------------------------------------------------------------------


def _flip_a_middle_block(url: str, path: bytes, key_file: Path | None, state: Path) -> str:
    """Flip one byte inside the middle block of `path`, in its pack; return the block key."""
    volume = open_volume(url, key_file=str(key_file) if key_file else None, state_dir=state)
    try:
        entry = volume.namespace(volume.latest()).lookup(path)
        assert entry is not None and entry.content is not None
        blocks = [block_id for block_id, *_ in volume.reader(entry.content).blocks(0)]
        block_id = blocks[len(blocks) // 2]
        assert block_id is not None and len(blocks) >= 3
        packs, raw = volume.pack_layer, volume.stack.raw if volume.stack else None
        assert packs is not None and raw is not None
        found = packs.index.lookup(0, block_id)
        assert found is not None
        number, offset, length = found
        pack_key = "packs/" + packs.index.pack(number).name
        data = bytearray(raw.get(pack_key))
        data[offset + length // 2] ^= 0x40
        raw.put(pack_key, bytes(data))
        return "blocks/" + block_id.hex()
    finally:
        volume.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_flipped_byte_fails_that_file_with_an_io_error(
    rsync_harness: RsyncHarness, encrypted: bool
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    write_file(src / "bad", os.urandom(200_000), 1_600_000_000_000_000_000)
    write_file(src / "good-random", os.urandom(100_000), 1_600_000_000_000_000_001)
    write_file(src / "sub" / "good-text", b"still fine\n" * 5000, 1_600_000_000_000_000_002)
    os.utime(src / "sub", ns=(1_600_000_000_000_000_002,) * 2)  # rsync#802
    url, key_file = str(h.tmp / "bucket"), (h.tmp / "key" if encrypted else None)
    target = _store_target(h, url, SMALL, key_file=key_file)
    push = h.run(target, ["-a", "src/", "lh:dst/"], tree=None)
    assert push.returncode == 0, push.describe()
    victim = _flip_a_middle_block(url, b"dst/bad", key_file, h.tmp / "inspect-state")

    pull = h.run(target, ["-a", "lh:dst/", "back/"], tree=None)
    assert pull.returncode == 23, pull.describe()
    # rsync's sender on a read error: the file is sent again, then discarded
    assert re.search(rb'read errors mapping "\S*dst/bad": .*\(5\)', pull.stderr), pull.describe()
    assert b"ERROR: bad failed verification -- update discarded." in pull.stderr
    back = h.client_dir / "back"
    assert not (back / "bad").exists()  # never wrong bytes
    expected = {rel: e for rel, e in snapshot(src).items() if rel != b"bad"}
    assert_same_tree(expected, snapshot(back), root_time=False)

    key = ["--key-file", str(key_file)] if key_file else []
    fsck = _cli("fsck", "--read-data", "--store", url, *key,
                "--state-dir", str(h.tmp / "fsck-state"))
    assert fsck.returncode == 1, fsck.stdout + fsck.stderr
    errors = [line for line in fsck.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {victim}: "), fsck.stdout
    assert "dst/bad" in errors[0]


def test_a_damaged_basis_block_does_not_end_a_delta_push(rsync_harness: RsyncHarness) -> None:
    """A push onto a file whose stored middle block is damaged: a warning, not a failure.

    The generator cannot read the basis past the damage; what it could not read gets
    sums no block can match, so the rest of the session goes through (before, the read
    error ended it with exit 11 and nothing after that file was stored).
    """
    h = rsync_harness
    src = h.client_dir / "src"
    original = os.urandom(200_000)
    write_file(src / "bad", original, 1_600_000_000_000_000_000)
    write_file(src / "later", b"after the damaged one\n", 1_600_000_000_000_000_001)
    url = str(h.tmp / "bucket")
    target = _store_target(h, url, SMALL)
    assert h.run(target, ["-a", "src/", "lh:dst/"], tree=None).returncode == 0
    _flip_a_middle_block(url, b"dst/bad", None, h.tmp / "inspect-state")

    write_file(src / "bad", b"new head" + original[8:], 1_600_000_100_000_000_000)
    write_file(src / "later", b"changed after the damaged one\n", 1_600_000_100_000_000_000)
    push = h.run(target, ["-a", "--no-W", "--stats", "src/", "lh:dst/"], tree=None)
    assert push.returncode == 0, push.describe()
    assert re.search(rb'read errors mapping "\S*dst/bad": .*\(5\)', push.stderr), push.describe()
    assert push.stats["Matched data"] > 0  # the readable start of the basis still matched
    back = h.run(target, ["-a", "lh:dst/later", "later-back"], tree=None)
    assert back.returncode == 0, back.describe()
    assert (h.client_dir / "later-back").read_bytes() == b"changed after the damaged one\n"
