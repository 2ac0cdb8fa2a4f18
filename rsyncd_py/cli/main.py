"""`rsyncd-py` entry point: route to the stdio server or to a subcommand.

Two shapes of command line arrive here:
- ``rsyncd-py [GLOBAL OPTIONS] --server [--sender] ARGS...``: what an rsync client runs
  through ``--rsync-path='rsyncd-py --store URL'`` or an OpenSSH forced command; the
  protocol is spoken on stdin/stdout (`rsyncd_py.cli.stdio_cmd`).
- ``rsyncd-py SUBCOMMAND [OPTIONS]``: serve, init, ls, cat, snapshots, fsck, gc, forget,
  stats, reindex, mount, umount. Each subcommand lives in its own module and registers itself
  with `add_parser(subparsers)` and runs with `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand name -> module implementing `add_parser(subparsers)` and `run(args) -> int`
SUBCOMMANDS: dict[str, str] = {
    "serve": "rsyncd_py.cli.serve_cmd",
    "init": "rsyncd_py.cli.store_cmds",
    "ls": "rsyncd_py.cli.store_cmds",
    "cat": "rsyncd_py.cli.store_cmds",
    "snapshots": "rsyncd_py.cli.store_cmds",
    "fsck": "rsyncd_py.cli.store_cmds",
    "gc": "rsyncd_py.cli.store_cmds",
    "forget": "rsyncd_py.cli.store_cmds",
    "stats": "rsyncd_py.cli.store_cmds",
    "reindex": "rsyncd_py.cli.store_cmds",
    "mount": "rsyncd_py.cli.mount_cmd",
    "umount": "rsyncd_py.cli.mount_cmd",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--server" in args:
        from rsyncd_py.cli import stdio_cmd

        return stdio_cmd.run(args)
    parser = argparse.ArgumentParser(prog="rsyncd-py", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in dict.fromkeys(SUBCOMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # subcommand module not present in this build
        module.add_parser(subparsers)
    parsed = parser.parse_args(args)
    return int(parsed.run(parsed))


if __name__ == "__main__":
    sys.exit(main())
