"""The servers the benchmark compares, each started fresh and measured from outside.

Theory of operation. A `System` is one rsync server reachable over SSH on 127.0.0.1:

- `StockRsync`: a throwaway OpenSSH sshd (own host key, own config, own authorized
  keys, a free non-privileged port, AES-128-GCM) running the stock `rsync` binary into
  a directory on the same tmpfs as the data. Its CPU is the sshd listener's reaped
  children (each connection's sshd and rsync processes) from /proc; its peak RSS is
  what GNU time reports for the rsync server processes (`--rsync-path` wrapper).
- `RsyncdPy`: `rsyncd-py serve` over a fresh store, either a local directory on tmpfs
  or a prefix of a moto S3 server (`MotoServer`). CPU is the server process's own
  (/proc), peak RSS its VmHWM, reset before each run through /proc/PID/clear_refs.
  Backend requests come from the snapshot the push committed (the store's own
  counters) and, on S3, from moto's HTTP request log (which also sees pulls).

`start()` gives an empty destination; `measure()` wraps one client run and returns
what the server spent on it once the session has fully ended (sshd reaped its
children, or rsyncd-py logged the session's `end:` line).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CIPHER = "aes128-gcm@openssh.com"
HOST = "127.0.0.1"
_TICK = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"listening on [^ ]*:(\d+),")
_MOTO_REQUESTS = "/__bench/requests"


@dataclass
class Measures:
    """What the server spent on one client run."""

    cpu_s: float | None = None
    peak_rss: int | None = None  # bytes
    http_requests: dict[str, int] | None = None  # S3 requests seen by moto
    backend_cpu_s: float | None = None  # moto's own CPU


@dataclass
class ClientKey:
    """The client's throwaway key pair and the authorized_keys file that lets it in."""

    private: Path
    authorized_keys: Path

    @classmethod
    def create(cls, directory: Path) -> ClientKey:
        private = directory / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)],
                       check=True)  # fmt: skip
        authorized = directory / "authorized_keys"
        shutil.copyfile(private.with_suffix(".pub"), authorized)
        return cls(private, authorized)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start (exit {process.poll()})")
        time.sleep(0.05)


def _proc_cpu(pid: int, *, children: bool) -> float:
    """utime+stime (and reaped children's, if asked) of `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _children(pid: int) -> list[str]:
    found: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += (task / "children").read_text().split()
    return found


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class System:
    """One server under test (see the module docstring)."""

    name = ""
    label = ""

    def __init__(self, work: Path, key: ClientKey) -> None:
        self.work = work / self.name
        self.key = key
        self.port = 0

    @property
    def rsh(self) -> str:
        """The `rsync -e` command: OpenSSH with the benchmark's key and cipher."""
        return (f"ssh -F /dev/null -p {self.port} -i {self.key.private} -c {CIPHER} "
                "-o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")  # fmt: skip

    def rsync_args(self) -> list[str]:
        """Extra client options this system needs (e.g. a --rsync-path)."""
        return []

    def remote(self, path: str) -> str:
        """The rsync argument naming `path` under this system's destination root."""
        raise NotImplementedError

    @property
    def server_pid(self) -> int | None:
        """The one long-lived server process, if there is one (what --profile samples)."""
        return None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def commits(self) -> list[tuple[int, dict[str, int]]]:
        """(commit time in ns, backend requests) of each snapshot a push made, if any."""
        return []

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measures]:
        """Measure the server around one client run (filled in when the block exits)."""
        raise NotImplementedError
        yield Measures()


class StockRsync(System):
    """rsync 3.x behind a throwaway OpenSSH sshd, into a local (tmpfs) directory."""

    name = "stock"
    label = "stock rsync + OpenSSH sshd, tmpfs dir"

    def __init__(self, work: Path, key: ClientKey) -> None:
        super().__init__(work, key)
        self.dest = self.work / "dest"
        self._sshd: subprocess.Popen[bytes] | None = None
        self._time = shutil.which("time")  # GNU time, for the server's peak RSS
        self._rss_file = self.work / "rsync-rss"

    def rsync_args(self) -> list[str]:
        rsync = shutil.which("rsync") or "rsync"
        if self._time is None:
            return [f"--rsync-path={rsync}"]
        return [f"--rsync-path={self._time} -o {self._rss_file} -f %M {rsync}"]

    def remote(self, path: str) -> str:
        return f"{HOST}:{self.dest}/{path}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.dest.mkdir(parents=True)
        host_key = self.work / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)  # fmt: skip
        self.port = free_port()
        config = self.work / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {HOST}\nHostKey {host_key}\n"
            f"PidFile {self.work / 'sshd.pid'}\nAuthorizedKeysFile {self.key.authorized_keys}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            f"Ciphers {CIPHER}\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        command = [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(config)]
        rc_file = Path.home() / ".bashrc"
        if os.geteuid() == 0 and rc_file.is_file() and shutil.which("unshare"):
            # sshd runs every command through the login shell, and Debian's bash then
            # reads ~/.bashrc (here it runs `pyenv init`: 0.2-0.3 s per connection, which
            # a backup server would not have). Mask it for this sshd only, in a mount
            # namespace of its own; unshare and sh exec, so the pid stays sshd's.
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       'mount --bind /dev/null "$0" && exec "$@"', str(rc_file), *command]
        self._sshd = subprocess.Popen(command, stderr=(self.work / "sshd.log").open("wb"))
        _wait_for_port(self.port, self._sshd)

    def stop(self) -> None:
        _stop(self._sshd)
        self._sshd = None
        shutil.rmtree(self.work, ignore_errors=True)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measures]:
        assert self._sshd is not None
        pid = self._sshd.pid
        self._rss_file.unlink(missing_ok=True)
        before = _proc_cpu(pid, children=True)
        measures = Measures()
        yield measures
        deadline = time.monotonic() + 10
        while _children(pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # the connection's processes are reaped after the client exits
        measures.cpu_s = _proc_cpu(pid, children=True) - before
        with contextlib.suppress(OSError, ValueError, IndexError):
            measures.peak_rss = int(self._rss_file.read_text().split()[-1]) * 1024


class MotoServer:
    """moto's S3 server in a child process, counting the HTTP requests it serves."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.bucket = "bench"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }  # fmt: skip

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.systems", "moto"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"moto did not start: {line!r}")
        self.endpoint = f"http://{HOST}:{int(line)}"
        request = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
        urllib.request.urlopen(request, timeout=30).close()

    def requests(self) -> dict[str, int]:
        with urllib.request.urlopen(self.endpoint + _MOTO_REQUESTS, timeout=30) as answer:
            return json.load(answer)

    def cpu(self) -> float:
        assert self.process is not None
        return _proc_cpu(self.process.pid, children=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class RsyncdPy(System):
    """`rsyncd-py serve` over a fresh store: a tmpfs directory, or moto S3 if `s3`."""

    def __init__(self, work: Path, key: ClientKey, *, s3: bool) -> None:
        self.name = "rsyncd-s3" if s3 else "rsyncd-local"
        self.label = "rsyncd-py serve, " + ("moto S3 store" if s3 else "local store on tmpfs")
        super().__init__(work, key)
        self._moto = MotoServer() if s3 else None
        self._serve: subprocess.Popen[bytes] | None = None
        self._log = self.work / "serve.log"
        self.store_url = ""
        self._sessions = 0

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self._moto is not None:
            env.pop("AWS_PROFILE", None)
            env.update(self._moto.env)
        return env

    def remote(self, path: str) -> str:
        return f"{HOST}:{path}"

    @property
    def server_pid(self) -> int | None:
        return self._serve.pid if self._serve is not None else None

    def _cli(self) -> list[str]:
        return [sys.executable, "-m", "rsyncd_py.cli.main"]

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        if self._moto is not None:
            self._moto.start()
            self.store_url = f"s3://{self._moto.bucket}/store-{os.getpid()}"
        else:
            self.store_url = str(self.work / "store")
        subprocess.run([*self._cli(), "init", "--store", self.store_url], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        self._serve = subprocess.Popen(
            [*self._cli(), "serve", "--store", self.store_url, "--listen", f"{HOST}:0",
             "--authorized-keys", str(self.key.authorized_keys),
             "--data-dir", str(self.work / "data"), "--log-file", str(self._log)],
            env=self.env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._sessions = 0
        deadline = time.monotonic() + 60
        while not (found := _LISTENING.search(self._read_log())):
            if self._serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rsyncd-py serve did not start:\n{self._read_log()}")
            time.sleep(0.05)
        self.port = int(found.group(1))

    def stop(self) -> None:
        _stop(self._serve)
        self._serve = None
        if self._moto is not None:
            self._moto.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def _read_log(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _ended_sessions(self) -> int:
        return self._read_log().count("] end: ")

    def commits(self) -> list[tuple[int, dict[str, int]]]:
        """(commit time in ns, backend requests of its session) for every snapshot.

        Read once per repetition (a separate read-only process with a private state
        dir); the runner gives each snapshot to the push whose time span holds it.
        """
        state = self.work / "inspect-state"
        result = subprocess.run(
            [*self._cli(), "snapshots", "--store", self.store_url, "--json",
             "--state-dir", str(state)],
            env=self.env, capture_output=True, check=True,
        )  # fmt: skip
        shutil.rmtree(state, ignore_errors=True)
        return [
            (int(snap["time_ns"]),
             {k[4:]: int(v) for k, v in snap.get("stats", {}).items() if k.startswith("req_")})
            for snap in json.loads(result.stdout)
        ]  # fmt: skip

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measures]:
        assert self._serve is not None
        pid = self._serve.pid
        http_before = self._moto.requests() if self._moto is not None else None
        moto_cpu = self._moto.cpu() if self._moto is not None else 0.0
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM (peak RSS)
        before = _proc_cpu(pid, children=False)
        measures = Measures()
        yield measures
        self._sessions += 1
        deadline = time.monotonic() + 30
        while self._ended_sessions() < self._sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        self._sessions = self._ended_sessions()
        measures.cpu_s = _proc_cpu(pid, children=False) - before
        status = Path(f"/proc/{pid}/status").read_text()
        if found := re.search(r"VmHWM:\s+(\d+) kB", status):
            measures.peak_rss = int(found.group(1)) * 1024
        if self._moto is not None and http_before is not None:
            measures.backend_cpu_s = self._moto.cpu() - moto_cpu
            after = self._moto.requests()
            measures.http_requests = {
                kind: count - http_before.get(kind, 0)
                for kind, count in after.items() if count - http_before.get(kind, 0)
            }


def make_systems(work: Path, key: ClientKey, names: list[str]) -> list[System]:
    """The systems to compare, in the order they take turns."""
    known = {
        "stock": lambda: StockRsync(work, key),
        "rsyncd-local": lambda: RsyncdPy(work, key, s3=False),
        "rsyncd-s3": lambda: RsyncdPy(work, key, s3=True),
    }
    return [known[name]() for name in names]


SYSTEM_NAMES = ("stock", "rsyncd-local", "rsyncd-s3")


# -- the moto child process ------------------------------------------------------------


@dataclass
class _Counter:
    counts: dict[str, int] = field(default_factory=dict)

    def kind(self, environ: dict[str, str]) -> str:
        method = environ["REQUEST_METHOD"]
        query = environ.get("QUERY_STRING", "")
        bucket_level = environ.get("PATH_INFO", "/").strip("/").count("/") == 0
        if method == "POST" and "delete" in query:
            return "DELETE_BATCH"
        if method == "GET" and bucket_level:
            return "LIST"
        return method


def _moto_main() -> None:
    """Serve moto S3 on a free port (printed first) until stdin closes."""
    import logging
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_app = DomainDispatcherApplication(create_backend_app)
    counter = _Counter()
    lock = threading.Lock()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == _MOTO_REQUESTS:
            with lock:
                body = json.dumps(counter.counts).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        kind = counter.kind(environ)
        with lock:
            counter.counts[kind] = counter.counts.get(kind, 0) + 1
        return moto_app(environ, start_response)

    server = make_server(HOST, 0, app, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.buffer.read()
    server.shutdown()


if __name__ == "__main__" and sys.argv[1:] == ["moto"]:
    _moto_main()
