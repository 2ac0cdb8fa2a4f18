"""``rsyncd-py serve``: the SSH server rsync clients push to and pull from.

With no options it serves the embedded local store in the data directory
(``$RSYNCD_PY_DATA``, default ``~/.local/share/rsyncd-py``: ``store/``, the host key,
``state/``), creating the store and an ed25519 host key on first start, listens on
127.0.0.1:2222 and lets in the keys of ``~/.ssh/authorized_keys``. On start it logs one
line with the address, the host key fingerprint, the store and a sample rsync command.

SIGTERM or SIGINT: stop accepting, let running sessions finish for up to ``--grace``
seconds (a second signal ends them at once), close the store, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rsyncd_py.fs.base import FsProvider
from rsyncd_py.logsetup import configure_logging
from rsyncd_py.malloc_tuning import tune_malloc

if TYPE_CHECKING:
    import asyncssh

__all__ = ["add_parser", "parse_listen", "run"]

log = logging.getLogger("rsyncd_py.serve")

DEFAULT_LISTEN = "127.0.0.1:2222"
DEFAULT_DATA_DIR = "~/.local/share/rsyncd-py"
HOST_KEY_NAME = "ssh_host_ed25519_key"


class SetupError(Exception):
    """The server cannot start; the message is the one line to print."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run the SSH server for rsync clients",
        description=(
            "Serve rsync clients over SSH (rsync -e 'ssh -p PORT' src/ HOST:dst/). "
            "By default: the local store in the data directory (created on first start), "
            f"listening on {DEFAULT_LISTEN}, keys from ~/.ssh/authorized_keys."
        ),
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--store",
        metavar="URL",
        help="block store to serve: /abs/path, file:///abs/path or s3://bucket/prefix "
        "(default: $RSYNCD_PY_STORE, else DATA/store, created on first start)",
    )
    what.add_argument("--root", metavar="DIR", help="serve a plain directory instead of a store")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    parser.add_argument(
        "--host-key",
        metavar="FILE",
        help=f"SSH host key, generated (ed25519) if missing (default DATA/{HOST_KEY_NAME})",
    )
    parser.add_argument(
        "--authorized-keys",
        metavar="FILE",
        default="~/.ssh/authorized_keys",
        help="client keys allowed in, re-read for every connection (default %(default)s); "
        "the option rsyncd-readonly on a key makes it pull-only",
    )
    parser.add_argument("--key-file", metavar="FILE", help="key file of an encrypted store")
    parser.add_argument(
        "--state-dir", metavar="DIR", help="local cache and index of the store (default DATA/state)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"data directory (default $RSYNCD_PY_DATA, else {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--log-file", metavar="FILE", help="append logs here instead of stderr")
    parser.add_argument(
        "--max-sessions",
        metavar="N",
        type=_positive_int,
        default=16,
        help="concurrent rsync sessions allowed; extra ones are refused (default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="on SIGTERM, how long running sessions may take to finish (default %(default)s)",
    )
    parser.add_argument(
        "--ciphers",
        metavar="LIST",
        help="comma-separated SSH ciphers to offer (default: AES-GCM only, the cheapest; "
        "add chacha20-poly1305@openssh.com for clients without AES-GCM)",
    )
    parser.add_argument(
        "--login-timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="time a client has to authenticate (default %(default)s)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail (repeatable)"
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Every decision `run` makes from the options, before the event loop starts."""

    data_dir: Path
    host: str
    port: int
    host_key: Path
    authorized_keys: Path
    root: str | None
    store_url: str | None
    create_store: bool
    key_file: str | None
    state_dir: str
    ciphers: tuple[str, ...] | None


def run(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; return the exit status."""
    configure_logging(args.verbose, args.log_file)
    try:
        plan = _plan(args)
    except SetupError as exc:
        print(f"rsyncd-py serve: {exc}", file=sys.stderr)
        return 1
    import uvloop  # only the CLI picks the event loop, never an import

    tune_malloc()  # before any thread starts
    try:
        return uvloop.run(_serve(plan, args))
    except SetupError as exc:
        if args.log_file:
            log.error("%s", exc)
        print(f"rsyncd-py serve: {exc}", file=sys.stderr)
        return 1


def _plan(args: argparse.Namespace) -> _Plan:
    data_dir = Path(
        os.path.expanduser(args.data_dir or os.environ.get("RSYNCD_PY_DATA") or DEFAULT_DATA_DIR)
    )
    host, port = parse_listen(args.listen)
    ciphers = _parse_ciphers(args.ciphers)
    store_url = None if args.root else args.store or os.environ.get("RSYNCD_PY_STORE")
    create_store = args.root is None and store_url is None
    if create_store:
        store_url = str(data_dir / "store")
    return _Plan(
        data_dir=data_dir,
        host=host,
        port=port,
        host_key=Path(os.path.expanduser(args.host_key or data_dir / HOST_KEY_NAME)),
        authorized_keys=Path(os.path.expanduser(args.authorized_keys)),
        root=args.root,
        store_url=store_url,
        create_store=create_store,
        key_file=args.key_file,
        state_dir=os.path.expanduser(args.state_dir or data_dir / "state"),
        ciphers=ciphers,
    )


def _parse_ciphers(text: str | None) -> tuple[str, ...] | None:
    """Split ``--ciphers`` and check every name against what asyncssh implements."""
    if text is None:
        return None
    from asyncssh.encryption import get_encryption_algs

    known = [name.decode() for name in get_encryption_algs()]
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SetupError(
            f"--ciphers: unknown {', '.join(unknown) or 'list'}; known: {', '.join(known)}"
        )
    return names


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[V6ADDR]:PORT`` (an empty host means every interface)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise SetupError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


async def _serve(plan: _Plan, args: argparse.Namespace) -> int:
    from rsyncd_py.transports.ssh import DEFAULT_CIPHERS, SshServer, SshSettings

    host_key = _host_key(plan.host_key)
    provider = _open_provider(plan)
    settings = SshSettings(
        host_key=host_key,
        authorized_keys=plan.authorized_keys,
        host=plan.host,
        port=plan.port,
        max_sessions=args.max_sessions,
        login_timeout=args.login_timeout,
        ciphers=plan.ciphers or DEFAULT_CIPHERS,
    )
    server = SshServer(settings, provider)
    try:
        await server.start()
    except (OSError, ValueError) as exc:
        await provider.aclose()
        raise SetupError(f"cannot listen on {args.listen}: {exc}") from None
    _log_banner(plan, server.port, host_key.get_fingerprint())
    if not plan.authorized_keys.exists():
        log.warning("%s does not exist: every client will be refused", plan.authorized_keys)

    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: shutting down", signal.Signals(signum).name)
            stop.set()
        else:
            log.info("%s again: ending running sessions now", signal.Signals(signum).name)
            server.abort_sessions()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    await server.shutdown(args.grace)
    await provider.aclose()
    log.info("stopped")
    return 0


def _host_key(path: Path) -> asyncssh.SSHKey:
    from rsyncd_py.transports.ssh import load_or_create_host_key

    try:
        key, created = load_or_create_host_key(path)
    except (OSError, ValueError) as exc:
        raise SetupError(f"host key {path}: {exc}") from None
    if created:
        log.info("generated a new host key %s", path)
    return key


def _open_provider(plan: _Plan) -> FsProvider:
    """Open the directory or store to serve, creating the default store on first start."""
    from rsyncd_py.fs.factory import StoreOptions, open_provider

    if plan.root is not None:
        if not os.path.isdir(plan.root):
            raise SetupError(f"--root {plan.root}: not a directory")
        try:
            return open_provider(root=plan.root)
        except Exception as exc:
            raise SetupError(f"cannot serve {plan.root}: {exc}") from None
    assert plan.store_url is not None
    if plan.create_store and not _has_entries(plan.store_url):
        _create_default_store(plan.store_url)
    options = StoreOptions(url=plan.store_url, key_file=plan.key_file, cache_dir=plan.state_dir)
    try:
        return open_provider(store=options)
    except Exception as exc:  # the store's own error text says what is wrong
        raise SetupError(f"cannot open store {plan.store_url}: {exc}") from None


def _has_entries(path: str) -> bool:
    try:
        return any(os.scandir(path))
    except FileNotFoundError:
        return False


def _create_default_store(path: str) -> None:
    """Create the data directory's store with the default parameters (as `init` would)."""
    from blockstore.factory import create_store
    from blockstore.volume import VolumeParams

    os.makedirs(path, exist_ok=True)
    try:
        create_store(path, volume=VolumeParams().to_config())
    except Exception as exc:
        raise SetupError(f"cannot create the store {path}: {exc}") from None
    log.info("created a new local store at %s", path)


def _log_banner(plan: _Plan, port: int, fingerprint: str) -> None:
    where = plan.root if plan.root is not None else plan.store_url
    kind = "directory" if plan.root is not None else "store"
    host = plan.host if plan.host not in ("", "0.0.0.0", "::") else "THIS-HOST"
    target = f"[{host}]" if ":" in host else host
    log.info(
        "listening on %s:%d, host key %s, %s %s; try: rsync -a -e 'ssh -p %d' src/ %s:dst/",
        plan.host or "*",
        port,
        fingerprint,
        kind,
        where,
        port,
        target,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
