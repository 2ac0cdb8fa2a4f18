"""``rsyncd-py [GLOBAL OPTIONS] --server ARGS...``: serve one rsync session on stdin/stdout.

How clients get here:

- ``rsync --rsync-path='rsyncd-py --store URL' -e ssh src/ host:dst/``: the remote shell
  runs ``rsyncd-py --store URL --server -logDtpre.iLsfxCIvu . dst/``.
- An OpenSSH forced command, ``command="rsyncd-py --store URL --server"`` in
  authorized_keys: nothing follows ``--server`` and the client's own command is taken
  from ``SSH_ORIGINAL_COMMAND``, vetted like the SSH server vets exec requests
  (`rsyncd_py.transports.command`).

Global options (before ``--server``): ``--root DIR`` serves a plain directory;
otherwise ``--store URL`` (default ``$RSYNCD_PY_STORE``) with ``--key-file F`` and
``--state-dir D`` (local cache) serves the block store. ``--log-file F`` logs to a
file; ``-v`` logs to stderr (or more detail to the file); by default nothing is logged,
since the session writes its rsync messages to stderr itself.

stdout *is* the protocol stream: it is claimed before anything else runs
(`claim_stdio`; this module imports only light modules, the provider and the session are
imported afterwards), so no banner or warning can ever reach it, and a module that
fails to import ends the process with one line, not a traceback. A bad global option or a
store that cannot be opened prints one ``rsyncd-py: ...`` line plus rsync's exit line to
stderr and exits with rsync's code (1 for usage, 5 for a store that cannot be opened),
exactly like a real ``rsync --server`` refusing an option.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rsyncd_py.logsetup import configure_logging
from rsyncd_py.malloc_tuning import tune_malloc
from rsyncd_py.protocol.errors import ExitCode, exit_line
from rsyncd_py.transports.stdio import StdioFds, StdioStream, claim_stdio, write_diagnostic

if TYPE_CHECKING:
    from rsyncd_py.fs.base import FsProvider

logger = logging.getLogger(__name__)

_STDERR = 2


class UsageError(Exception):
    """The global options are unusable; the message is the one line to print."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _build_parser() -> _Parser:
    parser = _Parser(prog="rsyncd-py", add_help=False, allow_abbrev=False)
    parser.add_argument("--root", metavar="DIR")
    parser.add_argument("--store", metavar="URL")
    parser.add_argument("--key-file", metavar="F")
    parser.add_argument("--state-dir", metavar="D")
    parser.add_argument("--log-file", metavar="F")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """What the operator chose before ``--server``."""

    root: str | None
    store: str | None
    key_file: str | None
    state_dir: str | None
    log_file: str | None
    verbose: int


def parse_command_line(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Split `argv` at ``--server``; return the global options and the server argv."""
    args = list(argv)
    if "--server" not in args:
        raise UsageError("--server missing")
    split = args.index("--server")
    ns = _build_parser().parse_args(args[:split])
    if ns.root is not None and ns.store is not None:
        raise UsageError("--root and --store are mutually exclusive")
    options = GlobalOptions(ns.root, ns.store, ns.key_file, ns.state_dir, ns.log_file, ns.verbose)
    server_argv = args[split:]
    if len(server_argv) == 1:
        server_argv = _forced_command_argv()
    return options, server_argv


def _forced_command_argv() -> list[str]:
    """Return the server argv from ``SSH_ORIGINAL_COMMAND`` (OpenSSH forced command)."""
    from rsyncd_py.transports.command import CommandRejected, parse_exec_command

    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    if not original:
        raise UsageError("nothing after --server and no SSH_ORIGINAL_COMMAND to serve")
    try:
        return list(parse_exec_command(original).argv)
    except CommandRejected as exc:
        raise UsageError(f"refusing SSH_ORIGINAL_COMMAND: {exc.reason}") from None


def _fail(message: str, code: int) -> int:
    """Report a failure before the protocol started, as ``rsync --server`` would."""
    text = f"rsyncd-py: {message}\n" + exit_line(code, "server")
    write_diagnostic(_STDERR, text.encode(errors="backslashreplace"))
    return code


def _configure_logging(options: GlobalOptions) -> None:
    """Log to ``--log-file``, or with ``-v`` to stderr; otherwise nowhere.

    stderr is the rsync client's terminal and the session already writes every rsync
    message there itself, so by default nothing is logged (a second copy of each error
    would only confuse); ``-v`` asks for the log there anyway.
    """
    if options.log_file or options.verbose:
        configure_logging(options.verbose, options.log_file, quiet=not options.log_file)
    else:
        configure_logging(0, stream=open(os.devnull, "w"))  # noqa: SIM115 (process lifetime)


def run(argv: Sequence[str]) -> int:
    """Serve one session on stdin/stdout and return the rsync exit code."""
    fds = claim_stdio()
    try:
        options, server_argv = parse_command_line(argv)
        _configure_logging(options)
    except (UsageError, OSError) as exc:
        return _fail(str(exc), ExitCode.RERR_SYNTAX)
    tune_malloc()  # before any thread starts
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(fds, options, server_argv))
    except Exception as exc:  # a broken installation, or a bug outside the session
        logger.error("internal error", exc_info=True)
        return _fail(f"internal error: {type(exc).__name__}: {exc}", ExitCode.RERR_CRASHED)


async def _serve(fds: StdioFds, options: GlobalOptions, server_argv: list[str]) -> int:
    """Open the provider, run the session, and always release both."""
    from blockstore.backend import StoreError
    from rsyncd_py.fs.factory import StoreOptions, open_provider

    store = None
    url = options.store or os.environ.get("RSYNCD_PY_STORE")  # --key-file/--state-dir apply to both
    if options.root is None and url:
        store = StoreOptions(url, options.key_file, options.state_dir)
    try:
        provider = open_provider(root=options.root, store=store)
    except ValueError as exc:
        return _fail(str(exc), ExitCode.RERR_SYNTAX)
    except (OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _fail(
            f"cannot open {options.root or options.store or 'the store'}: {reason}",
            ExitCode.RERR_STARTCLIENT,
        )
    stream = StdioStream(fds)
    try:
        return await _run_session(stream, server_argv, provider)
    finally:
        await provider.aclose()
        await stream.close()
        await stream.aclose_input()


async def _run_session(stream: StdioStream, server_argv: list[str], provider: FsProvider) -> int:
    """Run `run_server`, turning a signal or an unexpected exception into rsync's exit."""
    from rsyncd_py.session import run_server

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        return int(await run_server(stream, server_argv, provider))
    except asyncio.CancelledError:
        stream.write_stderr(exit_line(ExitCode.RERR_SIGNAL, "server").encode())
        return ExitCode.RERR_SIGNAL
    except ConnectionError as exc:  # the session should have reported it; a safety net
        logger.warning("connection to the client lost: %s", exc)
        return ExitCode.RERR_STREAMIO
    except Exception as exc:
        logger.error("internal error", exc_info=True)
        line = f"rsyncd-py: internal error: {type(exc).__name__}: {exc}\n"
        stream.write_stderr(line.encode(errors="backslashreplace"))
        stream.write_stderr(exit_line(ExitCode.RERR_CRASHED, "server").encode())
        return ExitCode.RERR_CRASHED
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.remove_signal_handler(signum)
