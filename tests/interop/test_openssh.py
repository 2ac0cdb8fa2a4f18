"""rsyncd-py behind real OpenSSH: ``--rsync-path`` and forced commands in authorized_keys.

A throwaway ``sshd`` (own host key, config, authorized_keys, a free port on 127.0.0.1)
serves three client keys:

- ``plain``: no restriction; clients name the server with
  ``--rsync-path='rsyncd-py --root DIR'`` (or ``--store URL``);
- ``forced``: ``command="rsyncd-py --store URL --server"``; whatever the client asks
  for arrives in ``SSH_ORIGINAL_COMMAND`` and is vetted before it is served;
- ``forced-env``: the same, with the store taken from ``RSYNCD_PY_STORE``.

The client is the stock ``rsync`` with the stock ``ssh``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RSYNC, RSYNCD_PY, RsyncHarness, Target, store_tree
from tests.helpers.trees import assert_same_tree, build_varied_tree, snapshot

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PLAIN_A = {"links", "allocated", "xattrs"}  # what a plain -a push does not reproduce
pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and os.geteuid() == 0 and shutil.which("ssh-keygen")),
    reason="needs OpenSSH's sshd and ssh-keygen, run as root (tools/setup-system.sh)",
)


@dataclass
class Sshd:
    port: int
    keys: dict[str, Path]
    root: Path  # served by the plain key's --rsync-path
    store: Target  # served by the forced-command keys

    def ssh_command(self, key: str) -> str:
        return (
            f"ssh -F /dev/null -p {self.port} -i {self.keys[key]} -o IdentitiesOnly=yes "
            "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o LogLevel=ERROR"
        )

    def rsync(self, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_ASKPASS")}
        return subprocess.run(
            [RSYNC, "-e", self.ssh_command(key), *args],
            cwd=cwd,
            env={**env, "LC_ALL": "C"},
            capture_output=True,
            timeout=120,
            check=False,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    work = tmp_path / "sshd"
    work.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    store = RsyncHarness(tmp_path).rsyncd_store()
    url = store.env["RSYNCD_PY_STORE"]
    server = f"{RSYNCD_PY} --state-dir {shlex.quote(str(store.home / 'state'))}"
    keys = {name: work / name for name in ("plain", "forced", "forced-env")}
    public = {name: _keygen(path) for name, path in keys.items()}
    forced = f"{server} --store {shlex.quote(url)} --server"
    forced_env = f"RSYNCD_PY_STORE={shlex.quote(url)} {server} --server"
    (work / "authorized_keys").write_text(
        f"{public['plain']}\n"
        f'command="{forced}",restrict {public["forced"]}\n'
        f'command="{forced_env}",restrict {public["forced-env"]}\n'
    )
    host_key = work / "host_key"
    _keygen(host_key)
    port = _free_port()
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stderr=(work / "sshd.log").open("wb")
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (work / "sshd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not start listening"
                time.sleep(0.1)
        yield Sshd(port, keys, root, store)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return build_varied_tree(tmp_path / "client" / "src", seed=3, big=False)


def test_rsync_path_to_a_root(sshd: Sshd, source: Path) -> None:
    rsync_path = f"--rsync-path={RSYNCD_PY} --root {shlex.quote(str(sshd.root))}"
    done = sshd.rsync("plain", "-a", rsync_path, "src/", "127.0.0.1:dst/", cwd=source.parent)
    assert done.returncode == 0, done.stderr
    assert_same_tree(snapshot(source), snapshot(sshd.root / "dst"), ignore=PLAIN_A)


@pytest.mark.parametrize("key", ["forced", "forced-env"])
def test_forced_command_serves_the_store(key: str, sshd: Sshd, source: Path) -> None:
    # the client's own --rsync-path is irrelevant: sshd runs the forced command
    done = sshd.rsync(key, "-a", "src/", "127.0.0.1:dst/", cwd=source.parent)
    assert done.returncode == 0, done.stderr
    pushed = store_tree(sshd.store, "dst")
    assert_same_tree(snapshot(source), pushed, ignore=PLAIN_A)


def test_forced_command_refuses_other_commands(sshd: Sshd) -> None:
    done = subprocess.run(
        [*shlex.split(sshd.ssh_command("forced")), "127.0.0.1", "cat /etc/passwd; id"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"rsyncd-py: refusing SSH_ORIGINAL_COMMAND" in done.stderr
