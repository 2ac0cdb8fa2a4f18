"""pytest plugin: SSH keys and a running ``rsyncd-py serve`` for tests that use real ssh.

Fixtures:

- ``ssh_keys``: a fresh set of ed25519 keys in a temp dir: ``client`` (authorized),
  ``stranger`` (not authorized), ``readonly`` (authorized with ``rsyncd-readonly``),
  the ``authorized_keys`` file listing them, and a ``host_key`` path (not yet created).
- ``rsyncd_serve``: ``rsyncd-py serve --root DIR`` as a subprocess on a free port
  (``--listen 127.0.0.1:0``; the port is read from the start-up log line). Yields a
  `ServeHandle` with ``host``, ``port``, ``key``, ``root``, ``ssh_cmd`` (the string for
  ``rsync -e``) and helpers ``ssh(...)``, ``rsync(...)``, ``dest(path)``.
- ``rsyncd_serve_factory``: start more servers with your own arguments
  (``factory(extra_args=[...], root=None, env={...})``); all are stopped at teardown.

Every ssh the helpers run has ``SSH_AUTH_SOCK``/``SSH_ASKPASS`` cleared, ``BatchMode``,
``-F /dev/null`` and ``IdentitiesOnly``, so nothing can prompt or pick up the machine's
own keys or config.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

STARTUP_TIMEOUT = 30.0
_LISTENING = re.compile(r"listening on (\S+):(\d+), host key (\S+)")


@dataclass(frozen=True)
class SshKeys:
    """Key files for one test (see the module docstring)."""

    dir: Path
    client: Path
    stranger: Path
    readonly: Path
    authorized_keys: Path
    host_key: Path


def _write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=path.name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    Path(f"{path}.pub").write_bytes(key.export_public_key())
    return key


def make_ssh_keys(directory: Path) -> SshKeys:
    """Create the keys and an authorized_keys file in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    client = _write_key(directory / "client_key")
    _write_key(directory / "stranger_key")
    readonly = _write_key(directory / "readonly_key")
    authorized = directory / "authorized_keys"
    authorized.write_bytes(
        client.export_public_key() + b"rsyncd-readonly " + readonly.export_public_key()
    )
    return SshKeys(
        dir=directory,
        client=directory / "client_key",
        stranger=directory / "stranger_key",
        readonly=directory / "readonly_key",
        authorized_keys=authorized,
        host_key=directory / "host_key",
    )


def ssh_env() -> dict[str, str]:
    """The environment for ssh/rsync: nothing that could prompt or use an agent."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_ASKPASS")}
    env["SSH_ASKPASS_REQUIRE"] = "never"
    return env


def ssh_argv(port: int, key: Path, *extra: str, log_level: str = "ERROR") -> list[str]:
    """The ssh command line (without host) for a test server on 127.0.0.1:`port`.

    ssh keeps the first value it sees for an option, so pass `log_level` ("INFO" shows
    channel-open failures with the server's reason) rather than another ``-o LogLevel``.
    """
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(port),
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        f"LogLevel={log_level}",
        "-o",
        "ConnectTimeout=20",
        *extra,
    ]


def run_ssh(
    port: int,
    key: Path,
    command: Sequence[str] | str,
    *,
    options: Sequence[str] = (),
    input: bytes | None = None,
    timeout: float = 60,
    host: str = "127.0.0.1",
    log_level: str = "ERROR",
) -> subprocess.CompletedProcess[bytes]:
    """Run one ssh command against a test server and capture its output."""
    words = [command] if isinstance(command, str) else list(command)
    return subprocess.run(
        [*ssh_argv(port, key, *options, log_level=log_level), host, *words],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=ssh_env(),
        check=False,
    )


@dataclass
class ServeHandle:
    """A running ``rsyncd-py serve`` subprocess."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    fingerprint: str
    key: Path
    keys: SshKeys
    root: Path | None
    data_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def ssh_cmd(self) -> str:
        """The remote-shell string for ``rsync -e``."""
        return shlex.join(ssh_argv(self.port, self.key))

    def dest(self, path: str = "") -> str:
        """An rsync remote-path argument on this server (``127.0.0.1:path``)."""
        return f"{self.host}:{path}"

    def ssh(
        self, command: Sequence[str] | str, **kwargs: object
    ) -> subprocess.CompletedProcess[bytes]:
        key = kwargs.pop("key", self.key)
        return run_ssh(self.port, key, command, **kwargs)  # type: ignore[arg-type]

    def rsync(
        self, *args: str, key: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the real rsync client with ``-e`` pointing at this server."""
        rsh = shlex.join(ssh_argv(self.port, key or self.key))
        return subprocess.run(
            ["rsync", "-e", rsh, *args],
            capture_output=True,
            timeout=timeout,
            env=ssh_env(),
            check=False,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_serve(
    keys: SshKeys,
    workdir: Path,
    *,
    root: Path | None,
    extra_args: Sequence[str] = (),
    name: str = "serve",
    env: Mapping[str, str] | None = None,
) -> ServeHandle:
    """Start ``rsyncd-py serve`` on a free port and wait for its start-up line.

    `env` adds to (and overrides) the environment, e.g. a moto server's AWS settings.
    """
    data_dir = workdir / f"{name}-data"
    log_path = workdir / f"{name}.log"
    args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--host-key",
        str(keys.host_key),
        "--authorized-keys",
        str(keys.authorized_keys),
        "--data-dir",
        str(data_dir),
        "--log-file",
        str(log_path),
        *(["--root", str(root)] if root is not None else []),
        *extra_args,
    ]
    child_env = {
        k: v for k, v in os.environ.items() if k not in ("RSYNCD_PY_STORE", "RSYNCD_PY_DATA")
    }
    child_env.update(env or {})
    # A restart under the same name appends to the same log: only read what this run adds.
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    process = subprocess.Popen(
        [sys.executable, "-m", "rsyncd_py.cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.stderr").open("ab"),
        env=child_env,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        text = (
            log_path.read_bytes()[log_offset:].decode(errors="replace") if log_path.exists() else ""
        )
        found = _LISTENING.search(text)
        if found:
            return ServeHandle(
                process=process,
                host=found.group(1),
                port=int(found.group(2)),
                fingerprint=found.group(3).rstrip(","),
                key=keys.client,
                keys=keys,
                root=root,
                data_dir=data_dir,
                log_path=log_path,
                args=args,
            )
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    stderr = (workdir / f"{name}.stderr").read_text(errors="replace")
    raise RuntimeError(f"rsyncd-py serve did not start:\n{stderr}\n{text}")


@pytest.fixture
def ssh_keys(tmp_path: Path) -> SshKeys:
    return make_ssh_keys(tmp_path / "keys")


@pytest.fixture
def rsyncd_serve_factory(ssh_keys: SshKeys, tmp_path: Path) -> Iterator[object]:
    started: list[ServeHandle] = []

    def factory(
        *,
        root: Path | None = None,
        extra_args: Sequence[str] = (),
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServeHandle:
        handle = start_serve(
            ssh_keys,
            tmp_path,
            root=root,
            extra_args=extra_args,
            name=name or f"serve{len(started)}",
            env=env,
        )
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        if handle.process.poll() is None:
            handle.stop(signal.SIGKILL)


@pytest.fixture
def rsyncd_serve(rsyncd_serve_factory: object, tmp_path: Path) -> ServeHandle:
    root = tmp_path / "served"
    root.mkdir()
    return rsyncd_serve_factory(root=root)  # type: ignore[operator]
