"""Logging set-up shared by the command-line entry points.

One call, `configure_logging`, at the start of a command: log lines go to a file
(`--log-file`) or to stderr, never to stdout (which carries the rsync protocol in
``--server`` mode). Verbosity: 0 shows rsyncd-py's INFO lines (one per session start and
end, start-up and shutdown) and asyncssh's warnings; ``-v`` adds rsyncd-py's DEBUG;
``-vv`` adds asyncssh's INFO (connections, channels, auth); ``-vvv`` asyncssh's DEBUG.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["LOG_FORMAT", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    verbosity: int = 0,
    log_file: str | None = None,
    *,
    stream: TextIO | None = None,
    quiet: bool = False,
) -> None:
    """Send log records to `log_file` (appending) or to `stream` (default stderr).

    `quiet` raises rsyncd-py's own threshold to WARNING, for commands whose stderr is
    the rsync client's terminal. Calling this again replaces the earlier set-up.
    """
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    quiet_level = logging.WARNING if quiet else logging.INFO
    own = logging.DEBUG if verbosity else quiet_level
    logging.getLogger("rsyncd_py").setLevel(own)
    logging.getLogger("blockstore").setLevel(own)
    ssh_level = {0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}
    logging.getLogger("asyncssh").setLevel(ssh_level.get(verbosity, logging.DEBUG))
